/* UTF-8, the Unicode classes of the pre-tokenizer regexes, and GPT-2's byte alphabet. */
#include "tokenizer_internal.h"

#include "tokenizer_unicode_table.h"

uint32_t mlxn_tok_utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
    unsigned char b = s[0];
    *len = 1;
    if (b < 0x80)
        return b;
    size_t need;
    uint32_t cp, min;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 2, cp = b & 0x1Fu, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 3, cp = b & 0x0Fu, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4, cp = b & 0x07u, min = 0x10000;
    } else {
        return TOK_CP_INVALID;
    }
    if (n < need)
        return TOK_CP_INVALID;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return TOK_CP_INVALID;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return TOK_CP_INVALID;
    *len = need;
    return cp;
}

size_t mlxn_tok_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

uint8_t mlxn_tok_cp_classes(uint32_t cp)
{
    size_t lo = 0, hi = sizeof tok_cp_ranges / sizeof tok_cp_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_cp_ranges[mid].first)
            hi = mid;
        else if (cp > tok_cp_ranges[mid].last)
            lo = mid + 1;
        else
            return tok_cp_ranges[mid].classes;
    }
    return 0;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF)
 * spell themselves; the other 68 bytes, in order, spell U+0100 onwards. So every byte is one
 * printable character that no pre-tokenizer regex treats as white space. */
static bool spells_itself(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t mlxn_tok_byte_to_cp(uint8_t b)
{
    if (spells_itself(b))
        return b;
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        k += !spells_itself(x);
    return 0x100 + k;
}

int mlxn_tok_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return spells_itself(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68)
        return -1;
    uint32_t k = cp - 0x100;
    for (unsigned x = 0; x < 256; x++)
        if (!spells_itself(x) && k-- == 0)
            return (int)x;
    return -1;
}
