/* pa_json_pydumps against Python's json.dumps (expected strings produced by CPython 3.11), and the
 * small JSON helpers. */
#include "check.h"
#include "jsonutil.h"

static void dumps_is(const char *json, bool sort_keys, const char *want)
{
    cJSON *v = cJSON_Parse(json);
    CHECK_MSG(v != NULL, "cannot parse %s", json);
    if (!v)
        return;
    char *got = pa_json_pydumps(v, sort_keys);
    CHECK_MSG(got && strcmp(got, want) == 0, "%s → %s, want %s", json, got ? got : "(null)", want);
    free(got);
    cJSON_Delete(v);
}

static void number_is(double d, const char *want)
{
    cJSON *v = cJSON_CreateNumber(d);
    char *got = v ? pa_json_pydumps(v, false) : NULL;
    CHECK_MSG(got && strcmp(got, want) == 0, "%.17g → %s, want %s", d, got ? got : "(null)", want);
    free(got);
    cJSON_Delete(v);
}

static void test_numbers(void)
{
    /* Integers (Python ints) */
    number_is(0, "0");
    number_is(-5, "-5");
    number_is(50257, "50257");
    number_is(4503599627370496.0, "4503599627370496");
    /* Floats (Python floats: repr) */
    number_is(1e-05, "1e-05");
    number_is(0.1, "0.1");
    number_is(1.5, "1.5");
    number_is(-2.25, "-2.25");
    number_is(1e-07, "1e-07");
    number_is(0.0001, "0.0001");
    number_is(123456.789, "123456.789");
    number_is(1e16, "1e+16");
    number_is(1e22, "1e+22");
    number_is(1.7976931348623157e308, "1.7976931348623157e+308");
    number_is(5e-324, "5e-324");
    number_is(3.141592653589793, "3.141592653589793");
    number_is(0.30000000000000004, "0.30000000000000004");
    /* cJSON keeps no int/float distinction, so an integral float is written as an int: Python
     * writes json.dumps(10000.0) as "10000.0". Hash inputs that need the float form (the
     * rope_theta bucket) are built as strings for this reason. */
    number_is(10000.0, "10000");
    dumps_is("\"10000.0\"", false, "\"10000.0\"");
}

static void test_strings(void)
{
    dumps_is("\"\\u00e9\"", false, "\"\\u00e9\"");
    dumps_is("\"\xc3\xa9\"", false, "\"\\u00e9\"");
    dumps_is("\"\xf0\x9f\x98\x80\"", false, "\"\\ud83d\\ude00\""); /* emoji: surrogate pair */
    dumps_is("\"\\ud83d\\ude00\"", false, "\"\\ud83d\\ude00\"");
    dumps_is("\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\"", false,
             "\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\"");
    dumps_is("\"\\u2028\"", false, "\"\\u2028\"");
    dumps_is("\"/\"", false, "\"/\"");
    dumps_is("\"\"", false, "\"\"");
}

static void test_structures(void)
{
    dumps_is("[]", true, "[]");
    dumps_is("{}", true, "{}");
    dumps_is("[true,false,null]", false, "[true, false, null]");
    dumps_is("{\"b\":1,\"a\":[1,{\"d\":null,\"c\":true}],\"\xc3\xa9\":false}", true,
             "{\"a\": [1, {\"c\": true, \"d\": null}], \"b\": 1, \"\\u00e9\": false}");
    dumps_is("{\"b\":1,\"a\":2}", false, "{\"b\": 1, \"a\": 2}");
    dumps_is("[\"llama\",[\"LlamaForCausalLM\"],4096,32,32,32,11008,32000,4096]", true,
             "[\"llama\", [\"LlamaForCausalLM\"], 4096, 32, 32, 32, 11008, 32000, 4096]");
    dumps_is("[\"gpt2\",[\"GPT2LMHeadModel\"],1600,48,25,null,0,50257,1024]", true,
             "[\"gpt2\", [\"GPT2LMHeadModel\"], 1600, 48, 25, null, 0, 50257, 1024]");
}

static void test_helpers(void)
{
    cJSON *o = cJSON_Parse("{\"i\": 7, \"f\": 7.5, \"s\": \"x\", \"n\": null, \"big\": 1e300}");
    int64_t v = 0;
    CHECK(pa_json_int(o, "i", &v) && v == 7);
    CHECK(!pa_json_int(o, "f", &v));
    CHECK(!pa_json_int(o, "s", &v));
    CHECK(!pa_json_int(o, "n", &v));
    CHECK(!pa_json_int(o, "big", &v));
    CHECK(!pa_json_int(o, "missing", &v));
    CHECK_STR(pa_json_str(o, "s"), "x");
    CHECK(pa_json_str(o, "i") == NULL);
    cJSON_Delete(o);

    pa_error err = {0};
    cJSON *bad = pa_json_parse("{\"a\": [1, 2", 11, "f.json", &err);
    CHECK(bad == NULL);
    CHECK(err.status == PA_E_FORMAT);
    CHECK_MSG(strstr(err.msg, "f.json") != NULL, "%s", err.msg);
    /* len bounds the text: the bytes after it are never read. */
    pa_error_clear(&err);
    const char text[] = "[1]xyz";
    cJSON *ok = pa_json_parse(text, 3, "g.json", &err);
    CHECK(cJSON_IsArray(ok));
    cJSON_Delete(ok);
}

int main(void)
{
    test_numbers();
    test_strings();
    test_structures();
    test_helpers();
    return check_report("jsonutil");
}
