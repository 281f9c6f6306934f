/* GGUF files (versions 2 and 3): read through a memory map with zero copies, and write.
 *
 * Reading validates the whole header at open: every count, string, array, tensor shape, type,
 * offset and size is checked against the file's bytes, and anything out of place returns
 * MLXN_STATUS_ERR_BAD_FORMAT with a message naming the field and its byte offset. After a
 * successful open no accessor can read outside the mapping.
 */
#ifndef MLXN_GGUF_H
#define MLXN_GGUF_H

#include "mlxn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Metadata value types, with GGUF's numbering. */
typedef enum mlxn_gguf_type {
    MLXN_GGUF_TYPE_UINT8 = 0,
    MLXN_GGUF_TYPE_INT8 = 1,
    MLXN_GGUF_TYPE_UINT16 = 2,
    MLXN_GGUF_TYPE_INT16 = 3,
    MLXN_GGUF_TYPE_UINT32 = 4,
    MLXN_GGUF_TYPE_INT32 = 5,
    MLXN_GGUF_TYPE_FLOAT32 = 6,
    MLXN_GGUF_TYPE_BOOL = 7,
    MLXN_GGUF_TYPE_STRING = 8,
    MLXN_GGUF_TYPE_ARRAY = 9,
    MLXN_GGUF_TYPE_UINT64 = 10,
    MLXN_GGUF_TYPE_INT64 = 11,
    MLXN_GGUF_TYPE_FLOAT64 = 12,
    MLXN_GGUF_TYPE_COUNT
} mlxn_gguf_type;

MLXN_API const char *mlxn_gguf_type_name(mlxn_gguf_type type); /* "uint32", "array", ... */

/* The GGML tensor type table (GGUF's tensor type ids): name ("q4_K"), elements and bytes per
 * block, and the mlxn dtype (MLXN_DTYPE_COUNT where mlxn has none). Every id of the table is
 * known, including types mlxn has no kernel for; removed and unknown ids return false. */
typedef struct mlxn_ggml_type_info {
    const char *name;
    int64_t block_elems;
    int64_t block_bytes;
    mlxn_dtype dtype;
} mlxn_ggml_type_info;

MLXN_API bool mlxn_ggml_type_info_get(uint32_t ggml_type, mlxn_ggml_type_info *out);

typedef struct mlxn_gguf mlxn_gguf;
typedef struct mlxn_gguf_value mlxn_gguf_value;

/* Opens and validates a file, mapping it read-only. */
MLXN_API mlxn_status mlxn_gguf_open(const char *path, mlxn_gguf **out);
/* The same over caller memory, which must stay alive and unchanged until mlxn_gguf_free. */
MLXN_API mlxn_status mlxn_gguf_open_memory_borrowed(const void *data, size_t size,
                                                    mlxn_gguf **out);
MLXN_API void mlxn_gguf_free(mlxn_gguf *gguf);

MLXN_API uint32_t mlxn_gguf_version(const mlxn_gguf *gguf);
MLXN_API size_t mlxn_gguf_alignment(const mlxn_gguf *gguf);   /* general.alignment or 32 */
MLXN_API size_t mlxn_gguf_data_offset(const mlxn_gguf *gguf); /* start of the tensor data */
MLXN_API size_t mlxn_gguf_data_size(const mlxn_gguf *gguf);   /* bytes from there to the end */
/* The mapped file (host memory, read-only). */
MLXN_API const void *mlxn_gguf_file_data(const mlxn_gguf *gguf);
MLXN_API size_t mlxn_gguf_file_size(const mlxn_gguf *gguf);

/* ---------------------------------------------------------------- metadata */

MLXN_API int64_t mlxn_gguf_kv_count(const mlxn_gguf *gguf);
MLXN_API const char *mlxn_gguf_kv_key(const mlxn_gguf *gguf, int64_t index);
MLXN_API const mlxn_gguf_value *mlxn_gguf_kv_value(const mlxn_gguf *gguf, int64_t index);
/* The value of key, or NULL if the file has no such key. */
MLXN_API const mlxn_gguf_value *mlxn_gguf_find(const mlxn_gguf *gguf, const char *key);

MLXN_API mlxn_gguf_type mlxn_gguf_value_type(const mlxn_gguf_value *value);
/* Scalars. Integer getters accept any integer type whose value fits (so a count stored as
 * u32 or u64 reads the same); float accepts f32 and f64; a mismatch is MLXN_STATUS_ERR_DTYPE
 * with a message naming the stored type. */
MLXN_API mlxn_status mlxn_gguf_value_uint(const mlxn_gguf_value *v, uint64_t *out);
MLXN_API mlxn_status mlxn_gguf_value_int(const mlxn_gguf_value *v, int64_t *out);
MLXN_API mlxn_status mlxn_gguf_value_float(const mlxn_gguf_value *v, double *out);
MLXN_API mlxn_status mlxn_gguf_value_bool(const mlxn_gguf_value *v, bool *out);
/* NUL-terminated copy owned by the file object; len (optional) excludes the NUL (strings may
 * hold NUL bytes). */
MLXN_API mlxn_status mlxn_gguf_value_string(const mlxn_gguf_value *v, const char **out,
                                            size_t *len);
/* Arrays: element type and count. mlxn_gguf_array_at returns element i as a value, read with
 * the scalar getters (or as an array, when arrays nest). String and array elements live as
 * long as the file object; a numeric element is decoded into a per-thread slot that the next
 * call on the thread reuses. */
MLXN_API mlxn_status mlxn_gguf_array_info(const mlxn_gguf_value *v, mlxn_gguf_type *elem_type,
                                          uint64_t *count);
MLXN_API const mlxn_gguf_value *mlxn_gguf_array_at(const mlxn_gguf_value *v, uint64_t index);
/* Raw little-endian elements of a numeric array, in the file (may be unaligned). */
MLXN_API const void *mlxn_gguf_array_data(const mlxn_gguf_value *v);

/* Key-based shortcuts: a missing key is MLXN_STATUS_ERR_INVALID_ARG ("no key ..."). */
MLXN_API mlxn_status mlxn_gguf_get_uint(const mlxn_gguf *g, const char *key, uint64_t *out);
MLXN_API mlxn_status mlxn_gguf_get_int(const mlxn_gguf *g, const char *key, int64_t *out);
MLXN_API mlxn_status mlxn_gguf_get_float(const mlxn_gguf *g, const char *key, double *out);
MLXN_API mlxn_status mlxn_gguf_get_bool(const mlxn_gguf *g, const char *key, bool *out);
MLXN_API mlxn_status mlxn_gguf_get_string(const mlxn_gguf *g, const char *key, const char **out);

/* ---------------------------------------------------------------- tensors */

typedef struct mlxn_gguf_tensor {
    const char *name;
    uint32_t ggml_type;        /* GGUF's tensor type id */
    mlxn_ggml_type_info type;  /* its name, block geometry and mlxn dtype */
    int n_dims;                /* 1..4 */
    int64_t ne[MLXN_MAX_DIMS]; /* GGML order: ne[0] is the innermost (row) length; unused = 1 */
    uint64_t offset;           /* bytes from the data section's start (a multiple of alignment) */
    uint64_t size;             /* bytes */
    const void *data;          /* in the mapping */
} mlxn_gguf_tensor;

MLXN_API int64_t mlxn_gguf_tensor_count(const mlxn_gguf *gguf);
MLXN_API const mlxn_gguf_tensor *mlxn_gguf_tensor_at(const mlxn_gguf *gguf, int64_t index);
MLXN_API const mlxn_gguf_tensor *mlxn_gguf_find_tensor(const mlxn_gguf *gguf, const char *name);

/* A view of the tensor in `buffer`, which holds the data section from byte `base` on (a CPU
 * buffer over the mapping, or an upload). Shape is outermost first (ne reversed). A tensor
 * whose type has no mlxn dtype is MLXN_STATUS_ERR_UNSUPPORTED, naming the type. */
MLXN_API mlxn_status mlxn_gguf_tensor_view(const mlxn_gguf_tensor *t, mlxn_buffer *buffer,
                                           size_t base, mlxn_tensor *out);

/* A CPU buffer over the mapped data section (zero copy; read-only memory: use it for inputs
 * only). The file object must outlive the buffer. */
MLXN_API mlxn_status mlxn_gguf_map_data(mlxn_gguf *gguf, mlxn_device *cpu_device,
                                        mlxn_buffer **out);

/* Copies the data section into a new buffer of `device` through pinned staging buffers, two
 * chunks in flight. progress (optional) is called after each chunk with bytes done and total;
 * returning false cancels (MLXN_STATUS_ERR_INVALID_ARG, nothing leaked). */
typedef bool (*mlxn_progress_fn)(void *user, size_t done, size_t total);
MLXN_API mlxn_status mlxn_gguf_upload_data(mlxn_gguf *gguf, mlxn_device *device,
                                           mlxn_progress_fn progress, void *user,
                                           mlxn_buffer **out);

/* ---------------------------------------------------------------- writing (version 3) */

typedef struct mlxn_gguf_writer mlxn_gguf_writer;

MLXN_API mlxn_status mlxn_gguf_writer_create(mlxn_gguf_writer **out);
MLXN_API void mlxn_gguf_writer_free(mlxn_gguf_writer *w);

/* Metadata, in the order added (a key may be added once). Scalars of any numeric type take
 * their value from `value` (bytes of that type); strings are copied. */
MLXN_API mlxn_status mlxn_gguf_writer_set_scalar(mlxn_gguf_writer *w, const char *key,
                                                 mlxn_gguf_type type, const void *value);
MLXN_API mlxn_status mlxn_gguf_writer_set_string(mlxn_gguf_writer *w, const char *key,
                                                 const char *value, size_t len);
/* An array of count numeric elements (copied from data) or strings (data is const char *[],
 * NUL-terminated). */
MLXN_API mlxn_status mlxn_gguf_writer_set_array(mlxn_gguf_writer *w, const char *key,
                                                mlxn_gguf_type elem_type, const void *data,
                                                uint64_t count);
/* A copy of any value read from a file, nested arrays included. */
MLXN_API mlxn_status mlxn_gguf_writer_set_value(mlxn_gguf_writer *w, const char *key,
                                                const mlxn_gguf_value *value);
/* A tensor: ne in GGML order; data is borrowed until mlxn_gguf_writer_write returns and holds
 * exactly the bytes of that type and shape. Alignment is general.alignment if set (u32),
 * else 32. */
MLXN_API mlxn_status mlxn_gguf_writer_add_tensor(mlxn_gguf_writer *w, const char *name,
                                                 uint32_t ggml_type, int n_dims,
                                                 const int64_t *ne, const void *data);
MLXN_API mlxn_status mlxn_gguf_writer_write(mlxn_gguf_writer *w, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* MLXN_GGUF_H */
