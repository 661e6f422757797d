/* fuzz_tokenizer.c — caption text from a shopper: CLIP's tokenizer (HTML unescape, ftfy-style
 * fixes, BPE) must take any bytes, give sot first, ids inside the vocabulary and eot. Loads the
 * default vocabulary once (encoder/data). */
#include <stdio.h>
#include <stdlib.h>

#include "encoder/tokenizer.h"
#include "fuzz.h"

static enc_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (enc_tokenizer_open(&tok, NULL) != CR_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load the default vocabulary: %s\n",
                cr_error_message());
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int32_t ids[ENC_TOKENIZER_CONTEXT];
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    int n_used = 0, truncated = 0;
    if (enc_tokenizer_encode(tok, text, ids, &n_used, &truncated) == CR_OK) {
        int vocab = enc_tokenizer_vocab_size(tok);
        FUZZ_ASSERT(n_used >= 2 && n_used <= ENC_TOKENIZER_CONTEXT);
        FUZZ_ASSERT(ids[0] == enc_tokenizer_sot(tok));
        FUZZ_ASSERT(ids[n_used - 1] == enc_tokenizer_eot(tok));
        FUZZ_ASSERT(!truncated || n_used == ENC_TOKENIZER_CONTEXT);
        for (int i = 1; i < ENC_TOKENIZER_CONTEXT; i++)
            FUZZ_ASSERT(i < n_used ? ids[i] >= 0 && ids[i] < vocab : ids[i] == 0);
    }
    free(text);
    return 0;
}
