/* tokenizer.h — CLIP's byte-level BPE tokenizer, token for token equal to OpenAI CLIP's
 * `clip.tokenize(texts, context_length=77, truncate=True)`.
 *
 *     enc_tokenizer *tok = NULL;
 *     int32_t ids[ENC_TOKENIZER_CONTEXT];
 *     int n_used, truncated;
 *     if (enc_tokenizer_open(&tok, NULL) < 0)            // NULL: the default vocabulary
 *         fprintf(stderr, "%s\n", cr_error_message());
 *     rc = enc_tokenizer_encode(tok, "red, short sleeves", ids, &n_used, &truncated);
 *     ...
 *     enc_tokenizer_close(&tok);
 *
 * Vocabulary: OpenAI's `bpe_simple_vocab_16e6.txt.gz` (the first line skipped, the next 48894
 * merges used; vocab = 256 byte symbols, the same with `</w>`, each merge joined, then
 * `<|startoftext|>` and `<|endoftext|>`), or the equivalent Hugging Face pair `vocab.json` +
 * `merges.txt`. Both give the same ids (sot 49406, eot 49407, vocab 49408).
 *
 * Text pipeline (what CLIP's simple_tokenizer does, with ftfy replaced by NFC):
 *   NFC → HTML unescape twice → strip → collapse runs of Unicode white space to one ' ' →
 *   strip → lowercase (Python's str.lower: full mapping of U+0130, final sigma) →
 *   pre-tokenize with CLIP's regex (special tokens, 's 't 're 've 'm 'll 'd, letter runs,
 *   single digits, runs of other non-space characters; case-insensitive) → UTF-8 bytes of each
 *   piece → byte symbols → BPE by merge rank, `</w>` on the last symbol.
 * HTML unescape follows Python's html.unescape (numeric references with its replacement
 * rules, named references with or without ';' for the legacy names, longest-prefix matching)
 * over the HTML 4 entity set plus &apos; — not the whole HTML5 table (2231 names).
 *
 * Thread rules: a tokenizer is immutable after open, except an internal word cache guarded by
 * its own locks; any number of threads may call the encode functions on one handle at once.
 * Errors are reported as cr_err with a message from cr_error_message() (common/err.h).
 */
#ifndef ENC_TOKENIZER_H
#define ENC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* CLIP's context length: encode() always writes this many ids. */
#define ENC_TOKENIZER_CONTEXT 77

/* File name of OpenAI's merges file, as shipped in encoder/data/. */
#define ENC_TOKENIZER_VOCAB_FILE "bpe_simple_vocab_16e6.txt.gz"

typedef struct enc_tokenizer enc_tokenizer;

/* Loads a vocabulary. `path` is one of:
 *   - a gzip merges file (`*.gz`, OpenAI's bpe_simple_vocab_16e6.txt.gz);
 *   - a Hugging Face `vocab.json`, with `merges.txt` in the same directory;
 *   - a directory holding either (the .gz file is preferred when both are present);
 *   - NULL: the default vocabulary, see enc_tokenizer_default_path().
 * Writes *out only on success. Errors: CR_ERR_IO (missing or unreadable file),
 * CR_ERR_MODEL (malformed vocabulary or merges, missing special tokens), CR_ERR_NOMEM,
 * CR_ERR_INVALID (out is NULL). */
cr_err enc_tokenizer_open(enc_tokenizer **out, const char *path);

/* Frees the tokenizer and sets *pp to NULL. NULL-safe. No encode may be running on it. */
void enc_tokenizer_close(enc_tokenizer **pp);

/* Writes into buf (cap bytes, NUL-terminated) the path of the default vocabulary, the first
 * that exists of:
 *   1. $CIRRUS_VOCAB — a file (.gz or vocab.json) or a directory holding one;
 *   2. $CIRRUS_SOURCE_DIR/encoder/data/bpe_simple_vocab_16e6.txt.gz;
 *   3. <directory of tokenizer.c at compile time>/data/bpe_simple_vocab_16e6.txt.gz.
 * Returns CR_OK, CR_NOTFOUND (none exists; the message lists what was tried) or
 * CR_ERR_INVALID (buf too small). */
cr_err enc_tokenizer_default_path(char *buf, size_t cap);

/* Tokenizes `text` (NUL-terminated UTF-8) as clip.tokenize(text, 77, truncate=True):
 * out[0] = sot, then the BPE ids, then eot, then zeros up to ENC_TOKENIZER_CONTEXT. When the
 * text needs more than 75 ids, the first 75 are kept and eot is still last (out[76]).
 * `n_used` (optional) receives the number of ids written before the zero padding, sot and eot
 * included (2..77); `truncated` (optional) receives 1 when ids were dropped, else 0.
 * Errors: CR_ERR_INVALID (NULL argument, or text that is not valid UTF-8 — the message gives
 * the byte offset), CR_ERR_NOMEM. On error `out` is zero-filled. Thread-safe.
 * Cost: O(n log n) in the text length (a 1 MiB single word takes about 0.3 s); servers bound
 * the text size before calling. */
cr_err enc_tokenizer_encode(const enc_tokenizer *tok, const char *text,
                            int32_t out[ENC_TOKENIZER_CONTEXT], int *n_used, int *truncated);

/* Tokenizes `text` without sot/eot and without a length limit (CLIP's SimpleTokenizer.encode).
 * Writes up to `cap` ids to `ids` (may be NULL when cap is 0) and the total number of ids the
 * text produces to *n_total, which may exceed cap (then call again with a larger buffer).
 * Errors as enc_tokenizer_encode(). Thread-safe. */
cr_err enc_tokenizer_tokenize(const enc_tokenizer *tok, const char *text, int32_t *ids,
                              size_t cap, size_t *n_total);

/* The id of one vocabulary entry given as its byte-level string, e.g. "$</w>" → 259,
 * "<|endoftext|>" → 49407. Returns CR_OK, CR_NOTFOUND or CR_ERR_INVALID (NULL argument). */
cr_err enc_tokenizer_token_id(const enc_tokenizer *tok, const char *token, int32_t *id);

/* The start-of-text and end-of-text ids (49406 and 49407 with CLIP's vocabulary).
 * `tok` must not be NULL (also for vocab_size below). */
int32_t enc_tokenizer_sot(const enc_tokenizer *tok);
int32_t enc_tokenizer_eot(const enc_tokenizer *tok);

/* Number of ids in the vocabulary (49408 with CLIP's). */
int32_t enc_tokenizer_vocab_size(const enc_tokenizer *tok);

#endif
