/* tokenizer.json (+ tokenizer_config.json) → token table and TFV, as the reference computes it.
 *
 * Reference semantics (Cisco's Model Provenance Kit, tokenizer.py) over the vocabulary a Hugging
 * Face fast tokenizer reports with get_vocab(): the model vocabulary plus added_tokens, one entry
 * per unique string (an added token's id wins over the model's). Lengths are in Unicode code
 * points, as Python's len(); a byte that is not valid UTF-8 counts as one (non-alphabetic) code
 * point.
 */
#include "jsonutil.h"
#include "sha.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hard limits for untrusted files: beyond them a tokenizer is refused, never allocated for. */
#define TOK_MAX_TOKENS (4u * 1024u * 1024u)
#define TOK_MAX_TOKEN_BYTES (1u << 20)
#define TOK_MERGES_HASHED 50

const char *const pa_script_names[PA_SCRIPT_COUNT] = {"Latin",  "CJK",        "Cyrillic",
                                                      "Arabic", "Devanagari", "Other"};

/* ---------------------------------------------------------------- Unicode: isalpha and script */

/* Every code point for which Python's str.isalpha() is true (general category Lu, Ll, Lt, Lm, Lo),
 * in runs of one script class. The class follows the reference's classify_script(): ASCII is Latin;
 * otherwise the first keyword found in unicodedata.name(ch): CJK/HANGUL/HIRAGANA/KATAKANA/BOPOMOFO
 * → CJK, CYRILLIC, ARABIC, DEVANAGARI, LATIN; else Other. Generated from Python 3.11
 * (Unicode 14.0):
 *
 *   r = []
 *   for cp in range(0x110000):
 *       if chr(cp).isalpha():
 *           k = classify(chr(cp))          # 'L','C','Y','A','D','O'
 *           if r and r[-1][1] == cp - 1 and r[-1][2] == k: r[-1][1] = cp
 *           else: r.append([cp, cp, k])
 *
 * Regenerating it with a newer Unicode only changes the classes of newly assigned letters. */
#define L PA_SCRIPT_LATIN
#define C PA_SCRIPT_CJK
#define Y PA_SCRIPT_CYRILLIC
#define A PA_SCRIPT_ARABIC
#define D PA_SCRIPT_DEVANAGARI
#define O PA_SCRIPT_OTHER

static const struct alpha_run {
    uint32_t lo, hi;
    uint8_t script;
} alpha_runs[] = {
    // clang-format off
    {0x41, 0x5A, L}, {0x61, 0x7A, L}, {0xAA, 0xAA, O}, {0xB5, 0xB5, O}, {0xBA, 0xBA, O},
    {0xC0, 0xD6, L}, {0xD8, 0xF6, L}, {0xF8, 0x2AF, L}, {0x2B0, 0x2C1, O}, {0x2C6, 0x2D1, O},
    {0x2E0, 0x2E4, O}, {0x2EC, 0x2EC, O}, {0x2EE, 0x2EE, O}, {0x370, 0x374, O}, {0x376, 0x377, O},
    {0x37A, 0x37D, O}, {0x37F, 0x37F, O}, {0x386, 0x386, O}, {0x388, 0x38A, O}, {0x38C, 0x38C, O},
    {0x38E, 0x3A1, O}, {0x3A3, 0x3F5, O}, {0x3F7, 0x3FF, O}, {0x400, 0x481, Y}, {0x48A, 0x52F, Y},
    {0x531, 0x556, O}, {0x559, 0x559, O}, {0x560, 0x588, O}, {0x5D0, 0x5EA, O}, {0x5EF, 0x5F2, O},
    {0x620, 0x64A, A}, {0x66E, 0x66F, A}, {0x671, 0x6D3, A}, {0x6D5, 0x6D5, A}, {0x6E5, 0x6E6, A},
    {0x6EE, 0x6EF, A}, {0x6FA, 0x6FC, A}, {0x6FF, 0x6FF, A}, {0x710, 0x710, O}, {0x712, 0x72F, O},
    {0x74D, 0x74F, O}, {0x750, 0x77F, A}, {0x780, 0x7A5, O}, {0x7B1, 0x7B1, O}, {0x7CA, 0x7EA, O},
    {0x7F4, 0x7F5, O}, {0x7FA, 0x7FA, O}, {0x800, 0x815, O}, {0x81A, 0x81A, O}, {0x824, 0x824, O},
    {0x828, 0x828, O}, {0x840, 0x858, O}, {0x860, 0x86A, O}, {0x870, 0x887, A}, {0x889, 0x88E, A},
    {0x8A0, 0x8C9, A}, {0x904, 0x939, D}, {0x93D, 0x93D, D}, {0x950, 0x950, D}, {0x958, 0x961, D},
    {0x971, 0x97F, D}, {0x980, 0x980, O}, {0x985, 0x98C, O}, {0x98F, 0x990, O}, {0x993, 0x9A8, O},
    {0x9AA, 0x9B0, O}, {0x9B2, 0x9B2, O}, {0x9B6, 0x9B9, O}, {0x9BD, 0x9BD, O}, {0x9CE, 0x9CE, O},
    {0x9DC, 0x9DD, O}, {0x9DF, 0x9E1, O}, {0x9F0, 0x9F1, O}, {0x9FC, 0x9FC, O}, {0xA05, 0xA0A, O},
    {0xA0F, 0xA10, O}, {0xA13, 0xA28, O}, {0xA2A, 0xA30, O}, {0xA32, 0xA33, O}, {0xA35, 0xA36, O},
    {0xA38, 0xA39, O}, {0xA59, 0xA5C, O}, {0xA5E, 0xA5E, O}, {0xA72, 0xA74, O}, {0xA85, 0xA8D, O},
    {0xA8F, 0xA91, O}, {0xA93, 0xAA8, O}, {0xAAA, 0xAB0, O}, {0xAB2, 0xAB3, O}, {0xAB5, 0xAB9, O},
    {0xABD, 0xABD, O}, {0xAD0, 0xAD0, O}, {0xAE0, 0xAE1, O}, {0xAF9, 0xAF9, O}, {0xB05, 0xB0C, O},
    {0xB0F, 0xB10, O}, {0xB13, 0xB28, O}, {0xB2A, 0xB30, O}, {0xB32, 0xB33, O}, {0xB35, 0xB39, O},
    {0xB3D, 0xB3D, O}, {0xB5C, 0xB5D, O}, {0xB5F, 0xB61, O}, {0xB71, 0xB71, O}, {0xB83, 0xB83, O},
    {0xB85, 0xB8A, O}, {0xB8E, 0xB90, O}, {0xB92, 0xB95, O}, {0xB99, 0xB9A, O}, {0xB9C, 0xB9C, O},
    {0xB9E, 0xB9F, O}, {0xBA3, 0xBA4, O}, {0xBA8, 0xBAA, O}, {0xBAE, 0xBB9, O}, {0xBD0, 0xBD0, O},
    {0xC05, 0xC0C, O}, {0xC0E, 0xC10, O}, {0xC12, 0xC28, O}, {0xC2A, 0xC39, O}, {0xC3D, 0xC3D, O},
    {0xC58, 0xC5A, O}, {0xC5D, 0xC5D, O}, {0xC60, 0xC61, O}, {0xC80, 0xC80, O}, {0xC85, 0xC8C, O},
    {0xC8E, 0xC90, O}, {0xC92, 0xCA8, O}, {0xCAA, 0xCB3, O}, {0xCB5, 0xCB9, O}, {0xCBD, 0xCBD, O},
    {0xCDD, 0xCDE, O}, {0xCE0, 0xCE1, O}, {0xCF1, 0xCF2, O}, {0xD04, 0xD0C, O}, {0xD0E, 0xD10, O},
    {0xD12, 0xD3A, O}, {0xD3D, 0xD3D, O}, {0xD4E, 0xD4E, O}, {0xD54, 0xD56, O}, {0xD5F, 0xD61, O},
    {0xD7A, 0xD7F, O}, {0xD85, 0xD96, O}, {0xD9A, 0xDB1, O}, {0xDB3, 0xDBB, O}, {0xDBD, 0xDBD, O},
    {0xDC0, 0xDC6, O}, {0xE01, 0xE30, O}, {0xE32, 0xE33, O}, {0xE40, 0xE46, O}, {0xE81, 0xE82, O},
    {0xE84, 0xE84, O}, {0xE86, 0xE8A, O}, {0xE8C, 0xEA3, O}, {0xEA5, 0xEA5, O}, {0xEA7, 0xEB0, O},
    {0xEB2, 0xEB3, O}, {0xEBD, 0xEBD, O}, {0xEC0, 0xEC4, O}, {0xEC6, 0xEC6, O}, {0xEDC, 0xEDF, O},
    {0xF00, 0xF00, O}, {0xF40, 0xF47, O}, {0xF49, 0xF6C, O}, {0xF88, 0xF8C, O},
    {0x1000, 0x102A, O}, {0x103F, 0x103F, O}, {0x1050, 0x1055, O}, {0x105A, 0x105D, O},
    {0x1061, 0x1061, O}, {0x1065, 0x1066, O}, {0x106E, 0x1070, O}, {0x1075, 0x1081, O},
    {0x108E, 0x108E, O}, {0x10A0, 0x10C5, O}, {0x10C7, 0x10C7, O}, {0x10CD, 0x10CD, O},
    {0x10D0, 0x10FA, O}, {0x10FC, 0x10FF, O}, {0x1100, 0x11FF, C}, {0x1200, 0x1248, O},
    {0x124A, 0x124D, O}, {0x1250, 0x1256, O}, {0x1258, 0x1258, O}, {0x125A, 0x125D, O},
    {0x1260, 0x1288, O}, {0x128A, 0x128D, O}, {0x1290, 0x12B0, O}, {0x12B2, 0x12B5, O},
    {0x12B8, 0x12BE, O}, {0x12C0, 0x12C0, O}, {0x12C2, 0x12C5, O}, {0x12C8, 0x12D6, O},
    {0x12D8, 0x1310, O}, {0x1312, 0x1315, O}, {0x1318, 0x135A, O}, {0x1380, 0x138F, O},
    {0x13A0, 0x13F5, O}, {0x13F8, 0x13FD, O}, {0x1401, 0x166C, O}, {0x166F, 0x167F, O},
    {0x1681, 0x169A, O}, {0x16A0, 0x16EA, O}, {0x16F1, 0x16F8, O}, {0x1700, 0x1711, O},
    {0x171F, 0x1731, O}, {0x1740, 0x1751, O}, {0x1760, 0x176C, O}, {0x176E, 0x1770, O},
    {0x1780, 0x17B3, O}, {0x17D7, 0x17D7, O}, {0x17DC, 0x17DC, O}, {0x1820, 0x1878, O},
    {0x1880, 0x1884, O}, {0x1887, 0x18A8, O}, {0x18AA, 0x18AA, O}, {0x18B0, 0x18F5, O},
    {0x1900, 0x191E, O}, {0x1950, 0x196D, O}, {0x1970, 0x1974, O}, {0x1980, 0x19AB, O},
    {0x19B0, 0x19C9, O}, {0x1A00, 0x1A16, O}, {0x1A20, 0x1A54, O}, {0x1AA7, 0x1AA7, O},
    {0x1B05, 0x1B33, O}, {0x1B45, 0x1B4C, O}, {0x1B83, 0x1BA0, O}, {0x1BAE, 0x1BAF, O},
    {0x1BBA, 0x1BE5, O}, {0x1C00, 0x1C23, O}, {0x1C4D, 0x1C4F, O}, {0x1C5A, 0x1C7D, O},
    {0x1C80, 0x1C88, Y}, {0x1C90, 0x1CBA, O}, {0x1CBD, 0x1CBF, O}, {0x1CE9, 0x1CEC, O},
    {0x1CEE, 0x1CF3, O}, {0x1CF5, 0x1CF6, O}, {0x1CFA, 0x1CFA, O}, {0x1D00, 0x1D25, L},
    {0x1D26, 0x1D2A, O}, {0x1D2B, 0x1D2B, Y}, {0x1D2C, 0x1D61, O}, {0x1D62, 0x1D65, L},
    {0x1D66, 0x1D6A, O}, {0x1D6B, 0x1D77, L}, {0x1D78, 0x1D78, Y}, {0x1D79, 0x1D9A, L},
    {0x1D9B, 0x1DBF, O}, {0x1E00, 0x1EFF, L}, {0x1F00, 0x1F15, O}, {0x1F18, 0x1F1D, O},
    {0x1F20, 0x1F45, O}, {0x1F48, 0x1F4D, O}, {0x1F50, 0x1F57, O}, {0x1F59, 0x1F59, O},
    {0x1F5B, 0x1F5B, O}, {0x1F5D, 0x1F5D, O}, {0x1F5F, 0x1F7D, O}, {0x1F80, 0x1FB4, O},
    {0x1FB6, 0x1FBC, O}, {0x1FBE, 0x1FBE, O}, {0x1FC2, 0x1FC4, O}, {0x1FC6, 0x1FCC, O},
    {0x1FD0, 0x1FD3, O}, {0x1FD6, 0x1FDB, O}, {0x1FE0, 0x1FEC, O}, {0x1FF2, 0x1FF4, O},
    {0x1FF6, 0x1FFC, O}, {0x2071, 0x2071, L}, {0x207F, 0x207F, L}, {0x2090, 0x209C, L},
    {0x2102, 0x2102, O}, {0x2107, 0x2107, O}, {0x210A, 0x2113, O}, {0x2115, 0x2115, O},
    {0x2119, 0x211D, O}, {0x2124, 0x2124, O}, {0x2126, 0x2126, O}, {0x2128, 0x2128, O},
    {0x212A, 0x212D, O}, {0x212F, 0x2139, O}, {0x213C, 0x213F, O}, {0x2145, 0x2149, O},
    {0x214E, 0x214E, O}, {0x2183, 0x2183, O}, {0x2184, 0x2184, L}, {0x2C00, 0x2C2D, O},
    {0x2C2E, 0x2C2E, L}, {0x2C2F, 0x2C5D, O}, {0x2C5E, 0x2C5E, L}, {0x2C5F, 0x2C5F, O},
    {0x2C60, 0x2C7C, L}, {0x2C7D, 0x2C7D, O}, {0x2C7E, 0x2C7F, L}, {0x2C80, 0x2CE4, O},
    {0x2CEB, 0x2CEE, O}, {0x2CF2, 0x2CF3, O}, {0x2D00, 0x2D25, O}, {0x2D27, 0x2D27, O},
    {0x2D2D, 0x2D2D, O}, {0x2D30, 0x2D67, O}, {0x2D6F, 0x2D6F, O}, {0x2D80, 0x2D96, O},
    {0x2DA0, 0x2DA6, O}, {0x2DA8, 0x2DAE, O}, {0x2DB0, 0x2DB6, O}, {0x2DB8, 0x2DBE, O},
    {0x2DC0, 0x2DC6, O}, {0x2DC8, 0x2DCE, O}, {0x2DD0, 0x2DD6, O}, {0x2DD8, 0x2DDE, O},
    {0x2E2F, 0x2E2F, O}, {0x3005, 0x3006, O}, {0x3031, 0x3035, O}, {0x303B, 0x303C, O},
    {0x3041, 0x3096, C}, {0x309D, 0x309F, C}, {0x30A1, 0x30FA, C}, {0x30FC, 0x30FF, C},
    {0x3105, 0x312F, C}, {0x3131, 0x318E, C}, {0x31A0, 0x31BF, C}, {0x31F0, 0x31FF, C},
    {0x3400, 0x4DBF, C}, {0x4E00, 0x9FFF, C}, {0xA000, 0xA48C, O}, {0xA4D0, 0xA4FD, O},
    {0xA500, 0xA60C, O}, {0xA610, 0xA61F, O}, {0xA62A, 0xA62B, O}, {0xA640, 0xA66E, Y},
    {0xA67F, 0xA69D, Y}, {0xA6A0, 0xA6E5, O}, {0xA717, 0xA71F, O}, {0xA722, 0xA76F, L},
    {0xA770, 0xA770, O}, {0xA771, 0xA787, L}, {0xA788, 0xA788, O}, {0xA78B, 0xA7CA, L},
    {0xA7D0, 0xA7D1, L}, {0xA7D3, 0xA7D3, L}, {0xA7D5, 0xA7D9, L}, {0xA7F2, 0xA7F4, O},
    {0xA7F5, 0xA7F7, L}, {0xA7F8, 0xA7F9, O}, {0xA7FA, 0xA7FF, L}, {0xA800, 0xA801, O},
    {0xA803, 0xA805, O}, {0xA807, 0xA80A, O}, {0xA80C, 0xA822, O}, {0xA840, 0xA873, O},
    {0xA882, 0xA8B3, O}, {0xA8F2, 0xA8F7, D}, {0xA8FB, 0xA8FB, D}, {0xA8FD, 0xA8FE, D},
    {0xA90A, 0xA925, O}, {0xA930, 0xA946, O}, {0xA960, 0xA97C, C}, {0xA984, 0xA9B2, O},
    {0xA9CF, 0xA9CF, O}, {0xA9E0, 0xA9E4, O}, {0xA9E6, 0xA9EF, O}, {0xA9FA, 0xA9FE, O},
    {0xAA00, 0xAA28, O}, {0xAA40, 0xAA42, O}, {0xAA44, 0xAA4B, O}, {0xAA60, 0xAA76, O},
    {0xAA7A, 0xAA7A, O}, {0xAA7E, 0xAAAF, O}, {0xAAB1, 0xAAB1, O}, {0xAAB5, 0xAAB6, O},
    {0xAAB9, 0xAABD, O}, {0xAAC0, 0xAAC0, O}, {0xAAC2, 0xAAC2, O}, {0xAADB, 0xAADD, O},
    {0xAAE0, 0xAAEA, O}, {0xAAF2, 0xAAF4, O}, {0xAB01, 0xAB06, O}, {0xAB09, 0xAB0E, O},
    {0xAB11, 0xAB16, O}, {0xAB20, 0xAB26, O}, {0xAB28, 0xAB2E, O}, {0xAB30, 0xAB5A, L},
    {0xAB5C, 0xAB5F, O}, {0xAB60, 0xAB64, L}, {0xAB65, 0xAB65, O}, {0xAB66, 0xAB68, L},
    {0xAB69, 0xAB69, O}, {0xAB70, 0xABE2, O}, {0xAC00, 0xD7A3, C}, {0xD7B0, 0xD7C6, C},
    {0xD7CB, 0xD7FB, C}, {0xF900, 0xFA6D, C}, {0xFA70, 0xFAD9, C}, {0xFB00, 0xFB06, L},
    {0xFB13, 0xFB17, O}, {0xFB1D, 0xFB1D, O}, {0xFB1F, 0xFB28, O}, {0xFB2A, 0xFB36, O},
    {0xFB38, 0xFB3C, O}, {0xFB3E, 0xFB3E, O}, {0xFB40, 0xFB41, O}, {0xFB43, 0xFB44, O},
    {0xFB46, 0xFB4F, O}, {0xFB50, 0xFBB1, A}, {0xFBD3, 0xFD3D, A}, {0xFD50, 0xFD8F, A},
    {0xFD92, 0xFDC7, A}, {0xFDF0, 0xFDFB, A}, {0xFE70, 0xFE74, A}, {0xFE76, 0xFEFC, A},
    {0xFF21, 0xFF3A, L}, {0xFF41, 0xFF5A, L}, {0xFF66, 0xFFBE, C}, {0xFFC2, 0xFFC7, C},
    {0xFFCA, 0xFFCF, C}, {0xFFD2, 0xFFD7, C}, {0xFFDA, 0xFFDC, C}, {0x10000, 0x1000B, O},
    {0x1000D, 0x10026, O}, {0x10028, 0x1003A, O}, {0x1003C, 0x1003D, O}, {0x1003F, 0x1004D, O},
    {0x10050, 0x1005D, O}, {0x10080, 0x100FA, O}, {0x10280, 0x1029C, O}, {0x102A0, 0x102D0, O},
    {0x10300, 0x1031F, O}, {0x1032D, 0x10340, O}, {0x10342, 0x10349, O}, {0x10350, 0x10375, O},
    {0x10380, 0x1039D, O}, {0x103A0, 0x103C3, O}, {0x103C8, 0x103CF, O}, {0x10400, 0x1049D, O},
    {0x104B0, 0x104D3, O}, {0x104D8, 0x104FB, O}, {0x10500, 0x10527, O}, {0x10530, 0x10563, O},
    {0x10570, 0x1057A, O}, {0x1057C, 0x1058A, O}, {0x1058C, 0x10592, O}, {0x10594, 0x10595, O},
    {0x10597, 0x105A1, O}, {0x105A3, 0x105B1, O}, {0x105B3, 0x105B9, O}, {0x105BB, 0x105BC, O},
    {0x10600, 0x10736, O}, {0x10740, 0x10755, O}, {0x10760, 0x10767, O}, {0x10780, 0x10785, O},
    {0x10787, 0x107B0, O}, {0x107B2, 0x107BA, O}, {0x10800, 0x10805, O}, {0x10808, 0x10808, O},
    {0x1080A, 0x10835, O}, {0x10837, 0x10838, O}, {0x1083C, 0x1083C, O}, {0x1083F, 0x10855, O},
    {0x10860, 0x10876, O}, {0x10880, 0x1089E, O}, {0x108E0, 0x108F2, O}, {0x108F4, 0x108F5, O},
    {0x10900, 0x10915, O}, {0x10920, 0x10939, O}, {0x10980, 0x109B7, O}, {0x109BE, 0x109BF, O},
    {0x10A00, 0x10A00, O}, {0x10A10, 0x10A13, O}, {0x10A15, 0x10A17, O}, {0x10A19, 0x10A35, O},
    {0x10A60, 0x10A7C, O}, {0x10A80, 0x10A9C, O}, {0x10AC0, 0x10AC7, O}, {0x10AC9, 0x10AE4, O},
    {0x10B00, 0x10B35, O}, {0x10B40, 0x10B55, O}, {0x10B60, 0x10B72, O}, {0x10B80, 0x10B91, O},
    {0x10C00, 0x10C48, O}, {0x10C80, 0x10CB2, O}, {0x10CC0, 0x10CF2, O}, {0x10D00, 0x10D23, O},
    {0x10E80, 0x10EA9, O}, {0x10EB0, 0x10EB1, O}, {0x10F00, 0x10F1C, O}, {0x10F27, 0x10F27, O},
    {0x10F30, 0x10F45, O}, {0x10F70, 0x10F81, O}, {0x10FB0, 0x10FC4, O}, {0x10FE0, 0x10FF6, O},
    {0x11003, 0x11037, O}, {0x11071, 0x11072, O}, {0x11075, 0x11075, O}, {0x11083, 0x110AF, O},
    {0x110D0, 0x110E8, O}, {0x11103, 0x11126, O}, {0x11144, 0x11144, O}, {0x11147, 0x11147, O},
    {0x11150, 0x11172, O}, {0x11176, 0x11176, O}, {0x11183, 0x111B2, O}, {0x111C1, 0x111C4, O},
    {0x111DA, 0x111DA, O}, {0x111DC, 0x111DC, O}, {0x11200, 0x11211, O}, {0x11213, 0x1122B, O},
    {0x11280, 0x11286, O}, {0x11288, 0x11288, O}, {0x1128A, 0x1128D, O}, {0x1128F, 0x1129D, O},
    {0x1129F, 0x112A8, O}, {0x112B0, 0x112DE, O}, {0x11305, 0x1130C, O}, {0x1130F, 0x11310, O},
    {0x11313, 0x11328, O}, {0x1132A, 0x11330, O}, {0x11332, 0x11333, O}, {0x11335, 0x11339, O},
    {0x1133D, 0x1133D, O}, {0x11350, 0x11350, O}, {0x1135D, 0x11361, O}, {0x11400, 0x11434, O},
    {0x11447, 0x1144A, O}, {0x1145F, 0x11461, O}, {0x11480, 0x114AF, O}, {0x114C4, 0x114C5, O},
    {0x114C7, 0x114C7, O}, {0x11580, 0x115AE, O}, {0x115D8, 0x115DB, O}, {0x11600, 0x1162F, O},
    {0x11644, 0x11644, O}, {0x11680, 0x116AA, O}, {0x116B8, 0x116B8, O}, {0x11700, 0x1171A, O},
    {0x11740, 0x11746, O}, {0x11800, 0x1182B, O}, {0x118A0, 0x118DF, O}, {0x118FF, 0x11906, O},
    {0x11909, 0x11909, O}, {0x1190C, 0x11913, O}, {0x11915, 0x11916, O}, {0x11918, 0x1192F, O},
    {0x1193F, 0x1193F, O}, {0x11941, 0x11941, O}, {0x119A0, 0x119A7, O}, {0x119AA, 0x119D0, O},
    {0x119E1, 0x119E1, O}, {0x119E3, 0x119E3, O}, {0x11A00, 0x11A00, O}, {0x11A0B, 0x11A32, O},
    {0x11A3A, 0x11A3A, O}, {0x11A50, 0x11A50, O}, {0x11A5C, 0x11A89, O}, {0x11A9D, 0x11A9D, O},
    {0x11AB0, 0x11AF8, O}, {0x11C00, 0x11C08, O}, {0x11C0A, 0x11C2E, O}, {0x11C40, 0x11C40, O},
    {0x11C72, 0x11C8F, O}, {0x11D00, 0x11D06, O}, {0x11D08, 0x11D09, O}, {0x11D0B, 0x11D30, O},
    {0x11D46, 0x11D46, O}, {0x11D60, 0x11D65, O}, {0x11D67, 0x11D68, O}, {0x11D6A, 0x11D89, O},
    {0x11D98, 0x11D98, O}, {0x11EE0, 0x11EF2, O}, {0x11FB0, 0x11FB0, O}, {0x12000, 0x12399, O},
    {0x12480, 0x12543, O}, {0x12F90, 0x12FF0, O}, {0x13000, 0x1342E, O}, {0x14400, 0x14646, O},
    {0x16800, 0x16A38, O}, {0x16A40, 0x16A5E, O}, {0x16A70, 0x16ABE, O}, {0x16AD0, 0x16AED, O},
    {0x16B00, 0x16B2F, O}, {0x16B40, 0x16B43, O}, {0x16B63, 0x16B77, O}, {0x16B7D, 0x16B8F, O},
    {0x16E40, 0x16E7F, O}, {0x16F00, 0x16F4A, O}, {0x16F50, 0x16F50, O}, {0x16F93, 0x16F9F, O},
    {0x16FE0, 0x16FE1, O}, {0x16FE3, 0x16FE3, O}, {0x17000, 0x187F7, O}, {0x18800, 0x18CD5, O},
    {0x18D00, 0x18D08, O}, {0x1AFF0, 0x1AFF3, C}, {0x1AFF5, 0x1AFFB, C}, {0x1AFFD, 0x1AFFE, C},
    {0x1B000, 0x1B001, C}, {0x1B002, 0x1B11E, O}, {0x1B11F, 0x1B122, C}, {0x1B150, 0x1B152, C},
    {0x1B164, 0x1B167, C}, {0x1B170, 0x1B2FB, O}, {0x1BC00, 0x1BC6A, O}, {0x1BC70, 0x1BC7C, O},
    {0x1BC80, 0x1BC88, O}, {0x1BC90, 0x1BC99, O}, {0x1D400, 0x1D454, O}, {0x1D456, 0x1D49C, O},
    {0x1D49E, 0x1D49F, O}, {0x1D4A2, 0x1D4A2, O}, {0x1D4A5, 0x1D4A6, O}, {0x1D4A9, 0x1D4AC, O},
    {0x1D4AE, 0x1D4B9, O}, {0x1D4BB, 0x1D4BB, O}, {0x1D4BD, 0x1D4C3, O}, {0x1D4C5, 0x1D505, O},
    {0x1D507, 0x1D50A, O}, {0x1D50D, 0x1D514, O}, {0x1D516, 0x1D51C, O}, {0x1D51E, 0x1D539, O},
    {0x1D53B, 0x1D53E, O}, {0x1D540, 0x1D544, O}, {0x1D546, 0x1D546, O}, {0x1D54A, 0x1D550, O},
    {0x1D552, 0x1D6A5, O}, {0x1D6A8, 0x1D6C0, O}, {0x1D6C2, 0x1D6DA, O}, {0x1D6DC, 0x1D6FA, O},
    {0x1D6FC, 0x1D714, O}, {0x1D716, 0x1D734, O}, {0x1D736, 0x1D74E, O}, {0x1D750, 0x1D76E, O},
    {0x1D770, 0x1D788, O}, {0x1D78A, 0x1D7A8, O}, {0x1D7AA, 0x1D7C2, O}, {0x1D7C4, 0x1D7CB, O},
    {0x1DF00, 0x1DF1E, L}, {0x1E100, 0x1E12C, O}, {0x1E137, 0x1E13D, O}, {0x1E14E, 0x1E14E, O},
    {0x1E290, 0x1E2AD, O}, {0x1E2C0, 0x1E2EB, O}, {0x1E7E0, 0x1E7E6, O}, {0x1E7E8, 0x1E7EB, O},
    {0x1E7ED, 0x1E7EE, O}, {0x1E7F0, 0x1E7FE, O}, {0x1E800, 0x1E8C4, O}, {0x1E900, 0x1E943, O},
    {0x1E94B, 0x1E94B, O}, {0x1EE00, 0x1EE03, A}, {0x1EE05, 0x1EE1F, A}, {0x1EE21, 0x1EE22, A},
    {0x1EE24, 0x1EE24, A}, {0x1EE27, 0x1EE27, A}, {0x1EE29, 0x1EE32, A}, {0x1EE34, 0x1EE37, A},
    {0x1EE39, 0x1EE39, A}, {0x1EE3B, 0x1EE3B, A}, {0x1EE42, 0x1EE42, A}, {0x1EE47, 0x1EE47, A},
    {0x1EE49, 0x1EE49, A}, {0x1EE4B, 0x1EE4B, A}, {0x1EE4D, 0x1EE4F, A}, {0x1EE51, 0x1EE52, A},
    {0x1EE54, 0x1EE54, A}, {0x1EE57, 0x1EE57, A}, {0x1EE59, 0x1EE59, A}, {0x1EE5B, 0x1EE5B, A},
    {0x1EE5D, 0x1EE5D, A}, {0x1EE5F, 0x1EE5F, A}, {0x1EE61, 0x1EE62, A}, {0x1EE64, 0x1EE64, A},
    {0x1EE67, 0x1EE6A, A}, {0x1EE6C, 0x1EE72, A}, {0x1EE74, 0x1EE77, A}, {0x1EE79, 0x1EE7C, A},
    {0x1EE7E, 0x1EE7E, A}, {0x1EE80, 0x1EE89, A}, {0x1EE8B, 0x1EE9B, A}, {0x1EEA1, 0x1EEA3, A},
    {0x1EEA5, 0x1EEA9, A}, {0x1EEAB, 0x1EEBB, A}, {0x20000, 0x2A6DF, C}, {0x2A700, 0x2B738, C},
    {0x2B740, 0x2B81D, C}, {0x2B820, 0x2CEA1, C}, {0x2CEB0, 0x2EBE0, C}, {0x2F800, 0x2FA1D, C},
    {0x30000, 0x3134A, C},
    // clang-format on
};
#undef L
#undef C
#undef Y
#undef A
#undef D
#undef O

/* Script class of an alphabetic code point, or -1 when Python's isalpha() is false. */
static int alpha_script(uint32_t cp)
{
    if (cp < 0x80)
        return ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') ? PA_SCRIPT_LATIN : -1;
    size_t lo = 0, hi = sizeof alpha_runs / sizeof alpha_runs[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < alpha_runs[mid].lo)
            hi = mid;
        else if (cp > alpha_runs[mid].hi)
            lo = mid + 1;
        else
            return alpha_runs[mid].script;
    }
    return -1;
}

/* Decode one UTF-8 sequence from [p, end); returns the bytes used (>= 1). A malformed byte decodes
 * as U+FFFD on its own, so every byte belongs to exactly one code point. */
static size_t utf8_decode(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    unsigned c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if ((size_t)(end - p) < n)
        goto bad;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            goto bad;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        goto bad;
    *cp = v;
    return n;
bad:
    *cp = 0xFFFD;
    return 1;
}

/* ---------------------------------------------------------------- token hash and index */

/* pa_token_hash is part of the fingerprint format (VOA sketches and anchor choice are stored and
 * compared across machines and versions): it must never change. Definition: FNV-1a 64 over the
 * token's UTF-8 bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3), then the splitmix64
 * finaliser (xor-shift 30, * 0xbf58476d1ce4e5b9, xor-shift 27, * 0x94d049bb133111eb, xor-shift 31),
 * which spreads FNV's weak low bits. tests/unit/test_tokenizer.c pins known values. */
uint64_t pa_token_hash(const char *str, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *p = (const unsigned char *)str;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

/* A token being collected: the string still lives in the cJSON tree. */
typedef struct tok_cand {
    const char *str;
    uint32_t len;
    uint32_t id;
} tok_cand;

/* Open addressing, linear probing; a slot holds index + 1 into tokens (0 = empty). */
typedef struct tok_priv {
    uint32_t *slots;
    size_t mask;
    char *arena; /* all token strings, NUL terminated */
} tok_priv;

typedef struct tok_build {
    tok_cand *cands;
    size_t n, cap;
    uint32_t *slots;
    size_t mask;
} tok_build;

static bool slots_alloc(size_t expected, uint32_t **slots, size_t *mask)
{
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    *slots = calloc(cap, sizeof **slots);
    *mask = cap - 1;
    return *slots != NULL;
}

/* Slot where str is, or the empty slot where it would go. */
static size_t probe(const uint32_t *slots, size_t mask, const char *str, size_t len,
                    const char *(*str_at)(const void *, size_t, uint32_t *), const void *ctx)
{
    size_t i = (size_t)pa_token_hash(str, len) & mask;
    for (;; i = (i + 1) & mask) {
        if (!slots[i])
            return i;
        uint32_t slen;
        const char *s = str_at(ctx, slots[i] - 1, &slen);
        if (slen == len && memcmp(s, str, len) == 0)
            return i;
    }
}

static const char *cand_at(const void *ctx, size_t i, uint32_t *len)
{
    const tok_cand *c = &((const tok_build *)ctx)->cands[i];
    *len = c->len;
    return c->str;
}

static const char *token_at(const void *ctx, size_t i, uint32_t *len)
{
    const pa_token *t = &((const pa_tokenizer *)ctx)->tokens[i];
    *len = t->len;
    return t->str;
}

/* Add or re-id a token (a later entry for the same string wins, as in the tokenizers library). */
static pa_status build_add(tok_build *b, const char *str, int64_t id, const char *label,
                           pa_error *err)
{
    size_t len = strlen(str);
    if (len > TOK_MAX_TOKEN_BYTES)
        return pa_error_set(err, PA_E_LIMIT, "%s: a token of %zu bytes is over the %u-byte limit",
                            label, len, TOK_MAX_TOKEN_BYTES);
    if (id < 0 || id > (int64_t)UINT32_MAX)
        return pa_error_set(err, PA_E_FORMAT, "%s: token id %lld is out of range", label,
                            (long long)id);
    size_t slot = probe(b->slots, b->mask, str, len, cand_at, b);
    if (b->slots[slot]) {
        b->cands[b->slots[slot] - 1].id = (uint32_t)id;
        return PA_OK;
    }
    if (b->n >= b->cap) /* capacity was counted up front; this is a safety net */
        return pa_error_set(err, PA_E_FORMAT, "%s: vocabulary changed while reading", label);
    b->cands[b->n] = (tok_cand){str, (uint32_t)len, (uint32_t)id};
    b->slots[slot] = (uint32_t)++b->n;
    return PA_OK;
}

static int cmp_token(const void *x, const void *y)
{
    const pa_token *a = x, *b = y;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->str, b->str, n);
    if (c)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

int64_t pa_tokenizer_find(const pa_tokenizer *tok, const char *str, size_t len)
{
    if (!tok || !tok->priv_ || !str)
        return -1;
    const tok_priv *pv = tok->priv_;
    size_t slot = probe(pv->slots, pv->mask, str, len, token_at, tok);
    return pv->slots[slot] ? (int64_t)tok->tokens[pv->slots[slot] - 1].id : -1;
}

/* ---------------------------------------------------------------- reading tokenizer.json */

static bool item_id(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -9.0e18 || d > 9.0e18)
        return false;
    *out = (int64_t)d;
    return true;
}

static size_t count_children(const cJSON *v)
{
    size_t n = 0;
    for (const cJSON *c = v ? v->child : NULL; c; c = c->next)
        n++;
    return n;
}

/* The model vocabulary: an object {token: id} (BPE, WordPiece, WordLevel) or, for Unigram, an
 * array [[piece, score], ...] whose index is the id. */
static pa_status add_vocab(tok_build *b, const cJSON *vocab, bool unigram, const char *label,
                           pa_error *err)
{
    int64_t index = 0;
    for (const cJSON *e = vocab->child; e; e = e->next, index++) {
        pa_status st;
        if (unigram) {
            const cJSON *piece = cJSON_IsArray(e) ? e->child : NULL;
            if (!cJSON_IsString(piece))
                return pa_error_set(err, PA_E_FORMAT,
                                    "%s: Unigram vocab entry %lld is not [piece, score]", label,
                                    (long long)index);
            st = build_add(b, piece->valuestring, index, label, err);
        } else {
            int64_t id;
            if (!e->string || !item_id(e, &id))
                return pa_error_set(err, PA_E_FORMAT, "%s: vocab entry %lld has no integer id",
                                    label, (long long)index);
            st = build_add(b, e->string, id, label, err);
        }
        if (st != PA_OK)
            return st;
    }
    return PA_OK;
}

static pa_status add_added_tokens(tok_build *b, const cJSON *added, const char *label,
                                  pa_error *err)
{
    long index = 0;
    for (const cJSON *e = added->child; e; e = e->next, index++) {
        int64_t id;
        const char *content = pa_json_str(e, "content");
        if (!content || !pa_json_int(e, "id", &id))
            return pa_error_set(err, PA_E_FORMAT, "%s: added_tokens[%ld] needs id and content",
                                label, index);
        pa_status st = build_add(b, content, id, label, err);
        if (st != PA_OK)
            return st;
    }
    return PA_OK;
}

/* Merges as the reference writes them: "left right" strings stay as they are, ["left", "right"]
 * pairs are joined with a space. The first 50, joined by "\n", give merge_rule_hash. */
static pa_status read_merges(const cJSON *merges, pa_tfv *tfv, const char *label, pa_error *err)
{
    tfv->num_merges = 0;
    tfv->merge_rule_hash[0] = '\0';
    tfv->merges_hash[0] = '\0';
    if (!merges || cJSON_IsNull(merges))
        return PA_OK;
    if (!cJSON_IsArray(merges))
        return pa_error_set(err, PA_E_FORMAT, "%s: model.merges is not an array", label);
    /* first 50 merges (merge_rule_hash) and all of them (merges_hash, the reference's
     * full-merge identity) in one pass */
    pa_sha_ctx *sha = pa_sha_new(), *all = pa_sha_new();
    if (!sha || !all) {
        uint8_t discard[32];
        if (sha)
            pa_sha_final(sha, discard);
        if (all)
            pa_sha_final(all, discard);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
    }
    int64_t n = 0;
    for (const cJSON *m = merges->child; m; m = m->next, n++) {
        bool hashed = n < TOK_MERGES_HASHED;
        if (n > 0) {
            if (hashed)
                pa_sha_update(sha, "\n", 1);
            pa_sha_update(all, "\n", 1);
        }
        if (cJSON_IsString(m)) {
            if (hashed)
                pa_sha_update(sha, m->valuestring, strlen(m->valuestring));
            pa_sha_update(all, m->valuestring, strlen(m->valuestring));
            continue;
        }
        bool ok = cJSON_IsArray(m);
        for (const cJSON *part = ok ? m->child : NULL; part && ok; part = part->next) {
            if (!cJSON_IsString(part)) {
                ok = false;
                break;
            }
            if (part != m->child) {
                if (hashed)
                    pa_sha_update(sha, " ", 1);
                pa_sha_update(all, " ", 1);
            }
            if (hashed)
                pa_sha_update(sha, part->valuestring, strlen(part->valuestring));
            pa_sha_update(all, part->valuestring, strlen(part->valuestring));
        }
        if (!ok) {
            uint8_t discard[32];
            pa_sha_final(sha, discard);
            pa_sha_final(all, discard);
            return pa_error_set(err, PA_E_FORMAT,
                                "%s: merge %lld is neither \"a b\" nor [\"a\", \"b\"]", label,
                                (long long)n);
        }
    }
    uint8_t digest[32], digest_all[32];
    pa_sha_final(sha, digest);
    pa_sha_final(all, digest_all);
    tfv->num_merges = n;
    if (n > 0) {
        pa_hex(digest, 32, tfv->merge_rule_hash);
        pa_hex(digest_all, 32, tfv->merges_hash);
    }
    return PA_OK;
}

/* BPE, WordPiece, Unigram or WordLevel; older files may omit "type", as the tokenizers library
 * allows, and then the fields tell. NULL when the type is named but unknown. */
static const char *model_kind(const cJSON *model)
{
    static const char *const kinds[] = {"BPE", "WordPiece", "Unigram", "WordLevel"};
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(type)) {
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (strcmp(type->valuestring, kinds[i]) == 0)
                return kinds[i];
        return NULL;
    }
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(model, "vocab")))
        return "Unigram";
    if (cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return "BPE";
    if (cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix") ||
        cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word"))
        return "WordPiece";
    return "WordLevel";
}

/* ---------------------------------------------------------------- TFV */

/* Python's round(x, ndigits): glibc prints the exact binary value correctly rounded with ties to
 * even, as CPython's float rounding does. */
static double py_round(double x, int ndigits)
{
    char buf[400];
    snprintf(buf, sizeof buf, "%.*f", ndigits, x);
    return strtod(buf, NULL);
}

/* re.match(r"^<0x[0-9A-Fa-f]{2}>$", t): "$" also matches before one trailing newline. */
static bool is_byte_token(const char *s, size_t len)
{
    if (len == 7 && s[6] == '\n')
        len = 6;
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return false;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

static void compute_tfv(const pa_tokenizer *tok, pa_tfv *tfv)
{
    size_t n = tok->n_tokens;
    uint64_t single = 0, ws = 0, bytes = 0, total_len = 0, max_len = 0;
    uint64_t script[PA_SCRIPT_COUNT] = {0}, alpha = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)tok->tokens[i].str;
        const unsigned char *end = p + tok->tokens[i].len;
        uint64_t cps = 0;
        while (p < end) {
            uint32_t cp;
            p += utf8_decode(p, end, &cp);
            if (cps == 0 && (cp == 0x2581 || cp == 0x0120 || cp == ' '))
                ws++;
            cps++;
            int s = alpha_script(cp);
            if (s >= 0) {
                script[s]++;
                alpha++;
            }
        }
        single += cps == 1;
        total_len += cps;
        if (cps > max_len)
            max_len = cps;
        bytes += is_byte_token(tok->tokens[i].str, tok->tokens[i].len);
    }
    double dn = (double)n;
    tfv->vocab_size = (int64_t)n;
    tfv->pct_single_char = py_round((double)single / dn, 4);
    tfv->avg_token_length = py_round((double)total_len / dn, 2);
    tfv->max_token_length = (int64_t)max_len;
    tfv->pct_whitespace_prefix = py_round((double)ws / dn, 4);
    tfv->pct_byte_tokens = py_round((double)bytes / dn, 4);
    for (int s = 0; s < PA_SCRIPT_COUNT; s++)
        tfv->script[s] = alpha ? py_round((double)script[s] / (double)alpha, 4) : 0.0;
}

/* ---------------------------------------------------------------- tokenizer_config.json */

/* Copy at most cap - 1 bytes without cutting a UTF-8 sequence in half. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A special token is written as "<s>" or as an AddedToken object {"content": "<s>", ...}. */
static int64_t special_id(const pa_tokenizer *tok, const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v))
        return PA_NULL_INT;
    int64_t id = pa_tokenizer_find(tok, v->valuestring, strlen(v->valuestring));
    return id >= 0 ? id : PA_NULL_INT;
}

static pa_status read_config(pa_tokenizer *tok, const char *text, size_t len, const char *label,
                             pa_error *err)
{
    char clabel[300];
    snprintf(clabel, sizeof clabel, "%s (tokenizer_config.json)", label);
    cJSON *cfg = pa_json_parse(text, len, clabel, err);
    if (!cfg)
        return err ? err->status : PA_E_FORMAT;
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return pa_error_set(err, PA_E_FORMAT, "%s: not a JSON object", clabel);
    }
    const char *cls = pa_json_str(cfg, "tokenizer_class");
    if (cls)
        copy_utf8(tok->tfv.tokenizer_class, sizeof tok->tfv.tokenizer_class, cls);
    tok->bos_id = special_id(tok, cfg, "bos_token");
    tok->eos_id = special_id(tok, cfg, "eos_token");
    tok->pad_id = special_id(tok, cfg, "pad_token");
    tok->unk_id = special_id(tok, cfg, "unk_token");
    cJSON_Delete(cfg);
    return PA_OK;
}

/* ---------------------------------------------------------------- parse / free */

/* Move the collected tokens into the tokenizer: one arena for the strings, sorted by id, indexed by
 * string. */
static pa_status build_finish(tok_build *b, pa_tokenizer *tok, const char *label, pa_error *err)
{
    tok_priv *pv = calloc(1, sizeof *pv);
    if (!pv)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
    tok->priv_ = pv;
    size_t total = 0;
    for (size_t i = 0; i < b->n; i++)
        total += (size_t)b->cands[i].len + 1; /* n <= 4M tokens of <= 1 MiB: no overflow */
    pv->arena = malloc(total ? total : 1);
    tok->tokens = calloc(b->n ? b->n : 1, sizeof *tok->tokens);
    if (!pv->arena || !tok->tokens || !slots_alloc(b->n, &pv->slots, &pv->mask))
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory for %zu tokens", label, b->n);
    char *at = pv->arena;
    for (size_t i = 0; i < b->n; i++) {
        memcpy(at, b->cands[i].str, b->cands[i].len);
        at[b->cands[i].len] = '\0';
        tok->tokens[i] = (pa_token){at, b->cands[i].len, b->cands[i].id};
        at += b->cands[i].len + 1;
    }
    tok->n_tokens = b->n;
    qsort(tok->tokens, tok->n_tokens, sizeof *tok->tokens, cmp_token);
    for (size_t i = 0; i < tok->n_tokens; i++) {
        size_t slot =
            probe(pv->slots, pv->mask, tok->tokens[i].str, tok->tokens[i].len, token_at, tok);
        pv->slots[slot] = (uint32_t)(i + 1);
    }
    return PA_OK;
}

static pa_status parse_tokenizer(const cJSON *root, pa_tokenizer *tok, const char *label,
                                 pa_error *err)
{
    if (!cJSON_IsObject(root))
        return pa_error_set(err, PA_E_FORMAT, "%s: not a JSON object", label);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return pa_error_set(err, PA_E_FORMAT, "%s: no \"model\" object", label);
    const char *kind = model_kind(model);
    if (!kind)
        return pa_error_set(err, PA_E_UNSUPPORTED, "%s: unsupported tokenizer model type \"%.40s\"",
                            label, pa_json_str(model, "type"));
    copy_utf8(tok->tfv.model_kind, sizeof tok->tfv.model_kind, kind);
    bool unigram = strcmp(kind, "Unigram") == 0;

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (unigram ? !cJSON_IsArray(vocab) : !cJSON_IsObject(vocab))
        return pa_error_set(err, PA_E_FORMAT, "%s: model.vocab is not %s", label,
                            unigram ? "an array of [piece, score]" : "an object of token ids");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return pa_error_set(err, PA_E_FORMAT, "%s: added_tokens is not an array", label);

    size_t expected = count_children(vocab) + (cJSON_IsArray(added) ? count_children(added) : 0);
    if (expected == 0)
        return pa_error_set(err, PA_E_FORMAT, "%s: empty vocabulary", label);
    if (expected > TOK_MAX_TOKENS)
        return pa_error_set(err, PA_E_LIMIT, "%s: %zu tokens is over the %u-token limit", label,
                            expected, TOK_MAX_TOKENS);

    tok_build b = {0};
    b.cands = malloc(expected * sizeof *b.cands);
    b.cap = expected;
    pa_status st = PA_OK;
    if (!b.cands || !slots_alloc(expected, &b.slots, &b.mask))
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory for %zu tokens", label, expected);
    if (st == PA_OK)
        st = add_vocab(&b, vocab, unigram, label, err);
    if (st == PA_OK && cJSON_IsArray(added))
        st = add_added_tokens(&b, added, label, err);
    if (st == PA_OK)
        st = read_merges(cJSON_GetObjectItemCaseSensitive(model, "merges"), &tok->tfv, label, err);
    if (st == PA_OK)
        st = build_finish(&b, tok, label, err);
    free(b.cands);
    free(b.slots);
    return st;
}

pa_status pa_tokenizer_parse(const char *json, size_t len, const char *config_json,
                             size_t config_len, const char *label, pa_tokenizer **out,
                             pa_error *err)
{
    if (!label)
        label = "tokenizer.json";
    if (!out)
        return pa_error_set(err, PA_E_ARG, "%s: no output", label);
    *out = NULL;
    if (!json)
        return pa_error_set(err, PA_E_ARG, "%s: no input", label);
    pa_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
    tok->bos_id = tok->eos_id = tok->pad_id = tok->unk_id = PA_NULL_INT;
    if (!pa_sha256_hex(json, len, tok->sha256)) {
        free(tok);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
    }

    pa_status st;
    cJSON *root = pa_json_parse(json, len, label, err);
    if (!root) {
        st = err ? err->status : PA_E_FORMAT;
    } else {
        st = parse_tokenizer(root, tok, label, err);
        cJSON_Delete(root); /* the tokens now live in the arena */
    }
    if (st == PA_OK) {
        compute_tfv(tok, &tok->tfv);
        if (config_json && config_len > 0)
            st = read_config(tok, config_json, config_len, label, err);
    }
    if (st != PA_OK) {
        pa_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return PA_OK;
}

void pa_tokenizer_free(pa_tokenizer *tok)
{
    if (!tok)
        return;
    tok_priv *pv = tok->priv_;
    if (pv) {
        free(pv->slots);
        free(pv->arena);
        free(pv);
    }
    free(tok->tokens);
    free(tok);
}
