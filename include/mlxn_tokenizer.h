/* Tokenizers read from a GGUF file's vocabulary (the tokenizer.ggml.* keys).
 *
 * Two kinds, from tokenizer.ggml.model:
 * - "llama": SentencePiece-style BPE (Gemma, Llama 2): spaces written as U+2581, pieces merged
 *   by score, characters without a token written as <0xXX> byte tokens;
 *   tokenizer.ggml.add_space_prefix (default true) puts a space before the text.
 * - "gpt2": byte-level BPE (SmolLM2, Qwen, Llama 3): the text is split by the pre-tokenizer of
 *   tokenizer.ggml.pre ("gpt2"/"gpt-2"; "smollm"/"starcoder"/"refact": single digits, then
 *   GPT-2's; "qwen2"/"deepseek-r1-qwen"; "llama3"/"llama-bpe"), each piece's bytes are spelled
 *   with GPT-2's byte alphabet and merged by the rank of tokenizer.ggml.merges.
 * Other kinds or pre-tokenizers are MLXN_STATUS_ERR_UNSUPPORTED at creation.
 *
 * Special tokens (token types control and unknown, matched only when asked; user-defined,
 * always matched) are cut out of the text before it is tokenized, longest token first, as
 * llama.cpp does. The tokenizer copies what it needs: the GGUF may be freed after creation.
 * A tokenizer is immutable, so several threads may use one at once.
 *
 * Output buffers follow one rule: up to cap items are written, *n gets the full count, and a
 * call with *n > cap returns OK having written a prefix (call again with a buffer of *n; a
 * NULL buffer with cap 0 only asks for the size).
 */
#ifndef MLXN_TOKENIZER_H
#define MLXN_TOKENIZER_H

#include "mlxn_gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlxn_tokenizer mlxn_tokenizer;

MLXN_API mlxn_status mlxn_tokenizer_create_gguf(const mlxn_gguf *g, mlxn_tokenizer **out);
MLXN_API void mlxn_tokenizer_free(mlxn_tokenizer *t);

/* Token ids of text[0 .. len) (any bytes; text may be NULL when len is 0). add_bos: prepend
 * BOS when the vocabulary asks for it (tokenizer.ggml.add_bos_token; default true for "llama",
 * false for "gpt2") and has one. parse_special: control tokens written in the text (like
 * "<|im_start|>") become their ids; otherwise they are tokenized as plain text. */
MLXN_API mlxn_status mlxn_tokenizer_encode(const mlxn_tokenizer *t, const char *text, size_t len,
                                           bool add_bos, bool parse_special, int32_t *ids,
                                           size_t cap, size_t *n);
/* The bytes of one token's piece (no NUL added; a piece may hold any byte). Control and
 * unknown tokens render as their text only when render_special, else as nothing. Joining the
 * pieces of an encoding gives the text back, except that a SentencePiece vocabulary turns a
 * U+2581 of the text into a space and keeps the space add_space_prefix put in front, and a
 * byte-level vocabulary loses the bytes it has no token for (SmolLM2 lacks 21, e.g. 0xF1). */
MLXN_API mlxn_status mlxn_tokenizer_piece(const mlxn_tokenizer *t, int32_t id, bool render_special,
                                          char *buf, size_t cap, size_t *n);

MLXN_API int32_t mlxn_tokenizer_bos(const mlxn_tokenizer *t); /* -1 when none */
MLXN_API int32_t mlxn_tokenizer_eos(const mlxn_tokenizer *t); /* -1 when none */
/* End of generation: eos, eot (tokenizer.ggml.eot_token_id), eom, and control tokens spelled
 * like an end of turn or text ("<|im_end|>", "<end_of_turn>", "<|endoftext|>", "<|eot_id|>",
 * "<|end|>", "<|eom_id|>", "<|end_of_text|>", "<EOT>"). */
MLXN_API bool mlxn_tokenizer_is_eog(const mlxn_tokenizer *t, int32_t id);
MLXN_API int64_t mlxn_tokenizer_vocab_size(const mlxn_tokenizer *t);

/* The prompt for one user message with the assistant's turn opened, in the format of the
 * file's tokenizer.chat_template, which is recognised rather than run (no Jinja):
 * - ChatML (the template writes "<|im_start|>"; SmolLM2, Qwen):
 *   "<|im_start|>user\n" MESSAGE "<|im_end|>\n<|im_start|>assistant\n", after the default
 *   system turn when the template spells one out as a literal
 *   ("<|im_start|>system\n...<|im_end|>", as SmolLM2 and Qwen2.5 do);
 * - Gemma (the template writes "<start_of_turn>"):
 *   "<start_of_turn>user\n" MESSAGE "<end_of_turn>\n<start_of_turn>model\n", the message
 *   trimmed of white space when the template trims it.
 * A BOS that a template writes is left out: encode with add_bos. Encode the prompt with
 * parse_special. The text (without NUL) goes to buf, NUL-terminated when cap > *n. No
 * template, or one of another format, is MLXN_STATUS_ERR_UNSUPPORTED. */
MLXN_API mlxn_status mlxn_tokenizer_chat(const mlxn_tokenizer *t, const char *user_message,
                                         char *buf, size_t cap, size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* MLXN_TOKENIZER_H */
