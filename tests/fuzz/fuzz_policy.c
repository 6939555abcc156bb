/* libFuzzer target: policy.json text (fs/policy.c policy_parse, what policy_load and a SIGHUP
 * reload run on the admin's file), then what the daemon does with a loaded policy: decide for a
 * few models, write the policy back as JSON. A refused policy says why in one line and leaves
 * nothing behind; an accepted one reads back from its own JSON as the same policy. The same bytes
 * also go through the approval-note validator. */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz contract violated: %s: %s\n", what, detail ? detail : "");
    abort();
}

static void check_error(const char *errbuf, size_t cap)
{
    size_t n = strnlen(errbuf, cap);
    if (n == 0 || n >= cap)
        fail("refused without a message", NULL);
    if (strchr(errbuf, '\n'))
        fail("message is not one line", errbuf);
}

static char *print_policy(const policy *p)
{
    cJSON *o = policy_to_json(p);
    if (!o)
        fail("policy_to_json failed", NULL);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        fail("cJSON_PrintUnformatted failed", NULL);
    return s;
}

static void check_decisions(const policy *p)
{
    static const char *const paths[] = {"/meta/llama-7b", "/ft/tiny-chat"};
    static const char *const ancestors[] = {NULL, "/base/llama"};
    static const char *const families[] = {"meta--llama", "Qwen--qwen"};
    for (int status = POLICY_PENDING; status <= POLICY_FAILED; status++)
        for (int flags = 0; flags < 8; flags++) {
            policy_model m = {0};
            m.status = (policy_status)status;
            m.approved = flags == 7;
            m.has_linked_ancestor = flags & 1;
            m.ancestor_approved = flags == 3;
            m.paths = paths;
            m.n_paths = 1 + (flags & 1);
            m.ancestor_paths = ancestors;
            m.n_ancestor_paths = flags & 2 ? 2 : 0;
            m.ref_families = families;
            m.n_ref_families = flags & 4 ? 2 : 0;
            m.claimed_family = flags & 1 ? "llama" : NULL;
            policy_decision d;
            policy_decide(p, &m, &d);
            if (!d.rule || !d.reason[0] || strchr(d.reason, '\n') ||
                strnlen(d.reason, sizeof d.reason) >= sizeof d.reason)
                fail("decision without a rule or a one-line reason", d.reason);
            if (d.enforced != (!d.allow && policy_get_mode(p) == POLICY_ENFORCE) ||
                d.logged != (!d.allow && policy_get_mode(p) != POLICY_OFF) ||
                d.mode != policy_get_mode(p))
                fail("decision flags disagree with the mode", d.reason);
            if (m.approved && !d.allow)
                fail("an approved model was blocked", d.reason);
            cJSON *j = policy_decision_to_json(&d);
            if (!j)
                fail("policy_decision_to_json failed", NULL);
            cJSON_Delete(j);
            (void)policy_approval_label(m.approved, &d);
            (void)policy_event_decision(&d);
        }
}

static void check_note(const char *text, size_t size)
{
    char note[POLICY_NOTE_MAX + 1], err[256];
    err[0] = '\0';
    if (policy_note_parse(text, size, note, err, sizeof err) == 0) {
        size_t n = strlen(note);
        if (n > POLICY_NOTE_MAX || n > size)
            fail("note longer than its input", NULL);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)note[i] < 0x20 || note[i] == 0x7f)
                fail("note keeps a control character", NULL);
    } else {
        check_error(err, sizeof err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char errbuf[512];
    policy *p = (policy *)1;
    if (policy_parse(text, size, "fuzz/policy.json", &p, errbuf, sizeof errbuf) != 0) {
        if (p)
            fail("refused policy handed back", errbuf);
        check_error(errbuf, sizeof errbuf);
        check_note(text, size);
        return 0;
    }
    if (!p)
        fail("accepted policy is NULL", NULL);
    if (policy_n_allow(p) > POLICY_MAX_PATTERNS || policy_n_deny(p) > POLICY_MAX_PATTERNS)
        fail("too many patterns accepted", NULL);
    for (size_t i = 0; i < policy_n_allow(p); i++)
        if (!policy_allow_pattern(p, i) || !policy_allow_pattern(p, i)[0])
            fail("empty allow pattern", NULL);
    if (policy_allow_pattern(p, policy_n_allow(p)) || policy_deny_pattern(p, policy_n_deny(p)))
        fail("pattern past the end", NULL);
    check_decisions(p);

    /* round trip: the policy's JSON loads as the same policy */
    char *j1 = print_policy(p);
    policy *q = NULL;
    if (policy_parse(j1, strlen(j1), "roundtrip", &q, errbuf, sizeof errbuf) != 0)
        fail("a policy's own JSON is refused", errbuf);
    char *j2 = print_policy(q);
    if (strcmp(j1, j2) != 0 || policy_get_mode(p) != policy_get_mode(q) ||
        policy_get_require(p) != policy_get_require(q) ||
        policy_block_pending(p) != policy_block_pending(q))
        fail("policy JSON round trip changed the policy", j1);
    free(j1);
    free(j2);
    policy *r = policy_ref(q);
    policy_unref(q);
    policy_free(r);
    policy_unref(p);
    check_note(text, size);
    return 0;
}
