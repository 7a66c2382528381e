/* trainer/convert.h: models in and out of rft. Import from a GGUF file
 * (llama / qwen2 architectures, any supported quantisation, dequantised to
 * fp32, llama.cpp's Q/K row permutation undone), a Hugging Face directory
 * (config.json + safetensors) or an rft HDF5 checkpoint; export to a Hugging
 * Face directory or a GGUF file (F32 / F16 / BF16). The tokenizer travels
 * with the weights when the source has one. */
#ifndef RFT_CONVERT_H
#define RFT_CONVERT_H

#include <stddef.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

typedef enum { MODEL_SRC_UNKNOWN = 0, MODEL_SRC_GGUF, MODEL_SRC_HF, MODEL_SRC_H5 } model_src;

/* By content: GGUF magic, HDF5 signature, or a directory with config.json. */
model_src model_source_kind(const char *path);
int gguf_is_file(const char *path);   /* 1 if path starts with the GGUF magic */
int hf_is_dir(const char *path);      /* 1 if path is a directory holding config.json */

/* The config a source implies, without loading weights. */
int model_source_config(const char *path, model_config *cfg, char *err, size_t err_cap);

/* Loads any source into m (created here on backend be with max_tokens
   activations; free with model_free) and, when tok != NULL, its tokenizer
   (*tok = NULL when the source has none). Errors name the file and the
   key/tensor at fault; m is left freed on error. */
int model_import(const char *path, backend *be, int max_tokens, model *m, tokenizer **tok, char *err, size_t err_cap);

/* ---- GGUF (convert.c) ---- */
/* model_config from GGUF metadata and tensor shapes; arch gets
   general.architecture. Checks every tensor the config implies. */
int gguf_model_config(const gguf_file *g, model_config *cfg, char *arch, size_t arch_cap, char *err, size_t err_cap);
int gguf_model_load(const gguf_file *g, backend *be, int max_tokens, model *m, char *err, size_t err_cap);
/* tokenizer from tokenizer.ggml.* (NULL + err when absent or unsupported) */
tokenizer *gguf_tokenizer_load(const gguf_file *g, char *err, size_t err_cap);
/* Writes m (and tok's metadata when tok != NULL) as GGUF: 2-D weights as
   ggml_type (GGML_TYPE_F32, _F16 or _BF16), norms and biases F32.
   Architecture llama (Q/K rows permuted as convert_hf_to_gguf.py does), or
   qwen2 when the model has q/k/v biases. */
int gguf_model_save(const model *m, const tokenizer *tok, const char *path, int ggml_type, char *err, size_t err_cap);

/* llama.cpp's row permutation of a [n_head*hd, cols] Q or K weight
   (convert_hf_to_gguf.py permute) and its inverse; dst and src distinct. */
void qk_permute(float *dst, const float *src, int n_head, int hd, int cols);
void qk_unpermute(float *dst, const float *src, int n_head, int hd, int cols);

/* ---- Hugging Face directories (hf_import.c) ---- */
int hf_model_config(const char *dir, model_config *cfg, char *err, size_t err_cap);
int hf_model_load(const char *dir, backend *be, int max_tokens, model *m, char *err, size_t err_cap);
/* config.json + model.safetensors (dtype ST_F32, ST_F16 or ST_BF16; sharded
   above max_shard_bytes when > 0) + tokenizer.json + tokenizer_config.json
   (when tok != NULL) into dir (created if absent). */
int hf_model_save(const model *m, const tokenizer *tok, const char *dir, int st_dtype, unsigned long long max_shard_bytes,
                  char *err, size_t err_cap);

/* ---- rft inspect for these formats (cmd_convert.c) ---- */
int inspect_gguf(const char *path);
int inspect_hf(const char *path);

#endif
