/* GGML quantized block layouts, as GGUF files store them (ggml's ggml-common.h is the
 * definition; these structs are ours). Plain C, shared by the host and CUDA code; halves are
 * raw f16 bits. Every size is asserted against the GGUF type table's block bytes. */
#ifndef MLXN_GGML_BLOCKS_H
#define MLXN_GGML_BLOCKS_H

#include <stdint.h>

#define MLXN_QK 32   /* elements per block of the 32-element formats */
#define MLXN_QK_K 256 /* elements per super-block of the K formats */

typedef struct { uint16_t d; uint8_t qs[16]; } mlxn_block_q4_0;                 /* (q - 8) * d */
typedef struct { uint16_t d, m; uint8_t qs[16]; } mlxn_block_q4_1;              /* q * d + m */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } mlxn_block_q5_0;  /* (q - 16) * d */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } mlxn_block_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } mlxn_block_q8_0;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } mlxn_block_q2_K;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } mlxn_block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } mlxn_block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } mlxn_block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } mlxn_block_q6_K;
typedef struct { uint16_t d; uint8_t qs[16]; } mlxn_block_iq4_nl;               /* table[q] * d */
typedef struct { uint16_t d, scales_h; uint8_t scales_l[4]; uint8_t qs[128]; } mlxn_block_iq4_xs;

#ifdef __cplusplus
#define MLXN_BLOCK_ASSERT(t, n) static_assert(sizeof(t) == (n), #t " size")
#else
#define MLXN_BLOCK_ASSERT(t, n) _Static_assert(sizeof(t) == (n), #t " size")
#endif
MLXN_BLOCK_ASSERT(mlxn_block_q4_0, 18);
MLXN_BLOCK_ASSERT(mlxn_block_q4_1, 20);
MLXN_BLOCK_ASSERT(mlxn_block_q5_0, 22);
MLXN_BLOCK_ASSERT(mlxn_block_q5_1, 24);
MLXN_BLOCK_ASSERT(mlxn_block_q8_0, 34);
MLXN_BLOCK_ASSERT(mlxn_block_q2_K, 84);
MLXN_BLOCK_ASSERT(mlxn_block_q3_K, 110);
MLXN_BLOCK_ASSERT(mlxn_block_q4_K, 144);
MLXN_BLOCK_ASSERT(mlxn_block_q5_K, 176);
MLXN_BLOCK_ASSERT(mlxn_block_q6_K, 210);
MLXN_BLOCK_ASSERT(mlxn_block_iq4_nl, 18);
MLXN_BLOCK_ASSERT(mlxn_block_iq4_xs, 136);
#undef MLXN_BLOCK_ASSERT

#endif
