/* trainer/tokenizer_h5.h: the /tokenizer group of an rft checkpoint.
 *
 *   attributes  format_version (int32, 1), pretokenizer (string), ignore_merges,
 *               add_bos, bos_id, eos_id, pad_id, unk_id (int32, -1 = none),
 *               chat_template_name (string: chatml | llama3 | raw), normalizer (none | nfc)
 *   vocab_bytes    uint8 [total]       token strings (vocabulary form) back to back
 *   vocab_offsets  int64 [n_vocab + 1] token i = vocab_bytes[off[i], off[i+1])
 *   token_types    int32 [n_vocab]     TOK_TYPE_* (CONTROL = special added token,
 *                                      USER_DEFINED = non-special added token)
 *   merges         int32 [n_merges, 2] left and right token ids, in rank order
 *   chat_template  uint8 [len]         the model's jinja template text (absent: none)
 *   pre_regex_bytes / pre_regex_offsets   the patterns of a "custom" pre-tokenizer
 *
 * The two functions match checkpoint.h's ckpt_tokenizer_save_fn / _load_fn:
 *   ckpt_parts.tokenizer = tok; ckpt_parts.tokenizer_save = tokenizer_h5_save;
 *   tokenizer *t; ckpt_load_tokenizer(f, tokenizer_h5_load, &t, err, cap);
 */
#ifndef RFT_TOKENIZER_H5_H
#define RFT_TOKENIZER_H5_H

#include <hdf5.h>
#include <stddef.h>

#include "tokenizer.h"

/* tok: const tokenizer *; writes into the open group */
int tokenizer_h5_save(hid_t group, const void *tok, char *err, size_t err_cap);
/* out: tokenizer ** (set to a new tokenizer on success); every size, offset
   and id is checked before use */
int tokenizer_h5_load(hid_t group, void *out, char *err, size_t err_cap);

#endif
