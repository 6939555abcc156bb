/* The policy engine in-process: policy.json validation (every bad key named), the default file,
 * a table of decisions over every rule, the approval helpers and the reload slot under readers. */
#include "check.h"
#include "policy.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/provfs-test-policy-XXXXXX";

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK_MSG(f != NULL, "%s: %s", path, strerror(errno));
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    if (buf && fread(buf, 1, 65535, f) == 0 && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static policy *parse_ok(const char *json)
{
    policy *p = NULL;
    char err[512] = "";
    int rc = policy_parse(json, strlen(json), "policy.json", &p, err, sizeof err);
    CHECK_MSG(rc == 0 && p, "%s: %s", json, err);
    return p;
}

/* ------------------------------------------------------------------ loading */

static void test_load_valid(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/full.json", tmpdir);
    write_text(path, "{\"mode\": \"enforce\", \"require_approval\": \"always\",\n"
                     " \"allow_families\": [\"/bases/*\", \"meta--*\"],\n"
                     " \"deny_families\": [\"*evil*\"], \"block_pending\": true}\n");
    policy *p = NULL;
    char err[512] = "";
    CHECK_MSG(policy_load(path, &p, err, sizeof err) == 0, "%s", err);
    if (!p)
        return;
    CHECK_INT(policy_get_mode(p), POLICY_ENFORCE);
    CHECK_INT(policy_get_require(p), POLICY_REQUIRE_ALWAYS);
    CHECK(policy_block_pending(p));
    CHECK_INT(policy_n_allow(p), 2);
    CHECK_INT(policy_n_deny(p), 1);
    CHECK_STR(policy_allow_pattern(p, 1), "meta--*");
    CHECK_STR(policy_deny_pattern(p, 0), "*evil*");
    CHECK(policy_deny_pattern(p, 1) == NULL);
    CHECK_STR(policy_source(p), path);

    /* policy_to_json writes a policy that loads back to the same thing. */
    cJSON *j = policy_to_json(p);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(text != NULL);
    if (text) {
        CHECK_STR(text, "{\"mode\":\"enforce\",\"require_approval\":\"always\",\"allow_families\":"
                        "[\"/bases/*\",\"meta--*\"],\"deny_families\":[\"*evil*\"],"
                        "\"block_pending\":true,\"allow_unsafe_pickle\":false}");
        policy *q = parse_ok(text);
        if (q) {
            CHECK(policy_serial(q) != policy_serial(p));
            CHECK_INT(policy_n_allow(q), 2);
            policy_free(q);
        }
    }
    free(text);
    cJSON_Delete(j);
    policy_free(p);

    /* Missing keys take the defaults. */
    p = parse_ok("{\"mode\": \"off\"}");
    if (p) {
        CHECK_INT(policy_get_mode(p), POLICY_OFF);
        CHECK_INT(policy_get_require(p), POLICY_REQUIRE_UNKNOWN_LINEAGE);
        CHECK(!policy_block_pending(p));
        CHECK(!policy_allow_unsafe_pickle(p));
        CHECK_INT(policy_n_allow(p) + policy_n_deny(p), 0);
        policy_free(p);
    }
    p = parse_ok("  {}  \n");
    if (p) {
        CHECK_INT(policy_get_mode(p), POLICY_AUDIT);
        policy_free(p);
    }
    p = policy_default();
    CHECK(p != NULL);
    if (p) {
        CHECK_INT(policy_get_mode(p), POLICY_AUDIT);
        CHECK_INT(policy_get_require(p), POLICY_REQUIRE_UNKNOWN_LINEAGE);
        CHECK_STR(policy_mode_name(policy_get_mode(p)), "audit");
        CHECK_STR(policy_require_name(POLICY_REQUIRE_UNKNOWN_LINEAGE), "unknown-lineage");
        policy_free(p);
    }
}

typedef struct bad_case {
    const char *json;
    const char *want; /* substring of the message */
} bad_case;

static void test_load_invalid(void)
{
    static const bad_case cases[] = {
        {"{\"mode\": \"strict\"}", "policy.json: \"mode\" must be off, audit or enforce"},
        {"{\"mode\": 1}", "\"mode\" must be off, audit or enforce"},
        {"{\"mode\": \"Enforce\"}", "\"mode\" must be"},
        {"{\"require_approval\": \"sometimes\"}",
         "\"require_approval\" must be never, unknown-lineage or always"},
        {"{\"require_approval\": null}", "\"require_approval\" must be"},
        {"{\"allow_families\": \"llama\"}", "\"allow_families\" must be an array"},
        {"{\"allow_families\": {}}", "\"allow_families\" must be an array"},
        {"{\"allow_families\": [\"ok\", 3]}", "\"allow_families\"[1] must be a string"},
        {"{\"deny_families\": [\"\"]}", "\"deny_families\"[0] must not be empty"},
        {"{\"deny_families\": [\"a\\u0001b\"]}", "\"deny_families\"[0] contains a control"},
        {"{\"deny_families\": null}", "\"deny_families\" must be an array"},
        {"{\"block_pending\": \"no\"}", "\"block_pending\" must be true or false"},
        {"{\"block_pending\": 0}", "\"block_pending\" must be true or false"},
        {"{\"allow_unsafe_pickle\": \"yes\"}", "\"allow_unsafe_pickle\" must be true or false"},
        {"{\"allow_unsafe_pickle\": 1}", "\"allow_unsafe_pickle\" must be true or false"},
        {"{\"allow_unsafe_pickle\": null}", "\"allow_unsafe_pickle\" must be true or false"},
        {"{\"allow_unsafe_pickle\": false, \"allow_unsafe_pickle\": true}",
         "\"allow_unsafe_pickle\" appears more than once"},
        {"{\"colour\": \"red\"}", "unknown key \"colour\""},
        {"{\"Mode\": \"audit\"}", "unknown key \"Mode\""},
        {"{\"mode\": \"audit\", \"mode\": \"enforce\"}", "\"mode\" appears more than once"},
        {"[]", "policy.json: the policy must be a JSON object"},
        {"\"audit\"", "must be a JSON object"},
        {"{", "policy.json: invalid JSON"},
        {"", "invalid JSON"},
        {"{} {}", "trailing data"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        policy *p = (policy *)1;
        char err[512] = "";
        int rc =
            policy_parse(cases[i].json, strlen(cases[i].json), "policy.json", &p, err, sizeof err);
        CHECK_MSG(rc == -1 && p == NULL, "accepted %s", cases[i].json);
        CHECK_MSG(strstr(err, cases[i].want) != NULL, "%s: message '%s' lacks '%s'", cases[i].json,
                  err, cases[i].want);
        CHECK_MSG(strchr(err, '\n') == NULL, "message is not one line: %s", err);
    }

    /* Too many patterns, over-long pattern. */
    size_t cap = 16 + (size_t)(POLICY_MAX_PATTERNS + 1) * 6;
    char *big = malloc(cap);
    if (big) {
        size_t n = (size_t)snprintf(big, cap, "{\"deny_families\":[");
        for (int i = 0; i <= POLICY_MAX_PATTERNS; i++)
            n += (size_t)snprintf(big + n, cap - n, "%s\"a\"", i ? "," : "");
        snprintf(big + n, cap - n, "]}");
        policy *p = NULL;
        char err[512] = "";
        CHECK(policy_parse(big, strlen(big), "policy.json", &p, err, sizeof err) == -1);
        CHECK_MSG(strstr(err, "\"deny_families\" has 1025 patterns") != NULL, "%s", err);
        free(big);
    }
    char longpat[POLICY_MAX_PATTERN + 64];
    int n = snprintf(longpat, sizeof longpat, "{\"allow_families\":[\"");
    memset(longpat + n, 'x', POLICY_MAX_PATTERN + 1);
    snprintf(longpat + n + POLICY_MAX_PATTERN + 1,
             sizeof longpat - (size_t)n - POLICY_MAX_PATTERN - 1, "\"]}");
    policy *p = NULL;
    char err[512] = "";
    CHECK(policy_parse(longpat, strlen(longpat), "policy.json", &p, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "\"allow_families\"[0] is too long") != NULL, "%s", err);

    /* From a file: the message names the file. */
    char path[256];
    snprintf(path, sizeof path, "%s/bad.json", tmpdir);
    write_text(path, "{\"mode\": \"audit\", \"require_approval\": \"maybe\"}\n");
    CHECK(policy_load(path, &p, err, sizeof err) == -1 && p == NULL);
    CHECK_MSG(strncmp(err, path, strlen(path)) == 0 && strstr(err, "\"require_approval\""), "%s",
              err);
    snprintf(path, sizeof path, "%s/missing.json", tmpdir);
    CHECK(policy_load(path, &p, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "missing.json") && strstr(err, "No such file"), "%s", err);
    CHECK(policy_load(tmpdir, &p, err, sizeof err) == -1); /* a directory */
    CHECK_MSG(strstr(err, "not a regular file") != NULL, "%s", err);
}

static void test_write_default(void)
{
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "%s/policy.json", tmpdir);
    mode_t old_mask = umask(077);
    CHECK_INT(policy_write_default(path, err, sizeof err), 0);
    umask(old_mask);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0644);
    char *text = read_text(path);
    CHECK(text && strcmp(text, policy_default_text) == 0);
    free(text);
    policy *p = NULL;
    CHECK_MSG(policy_load(path, &p, err, sizeof err) == 0, "%s", err);
    if (p) {
        CHECK_INT(policy_get_mode(p), POLICY_AUDIT);
        CHECK_INT(policy_get_require(p), POLICY_REQUIRE_UNKNOWN_LINEAGE);
        CHECK_INT(policy_n_allow(p), 0);
        CHECK_INT(policy_n_deny(p), 0);
        CHECK(!policy_block_pending(p));
        CHECK(!policy_allow_unsafe_pickle(p));
        policy_free(p);
    }
    /* An existing file is never replaced. */
    write_text(path, "{\"mode\": \"enforce\"}\n");
    CHECK_INT(policy_write_default(path, err, sizeof err), 1);
    text = read_text(path);
    CHECK(text && strcmp(text, "{\"mode\": \"enforce\"}\n") == 0);
    free(text);
    /* No temporary files are left behind. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", tmpdir);
    CHECK(system(cmd) != 0);
    /* A missing directory is an error naming the file. */
    snprintf(path, sizeof path, "%s/no/such/policy.json", tmpdir);
    CHECK_INT(policy_write_default(path, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "policy.json") != NULL, "%s", err);
}

/* ------------------------------------------------------------------ decisions */

typedef struct dcase {
    const char *name;
    const char *policy_json;
    const char *status;
    bool approved, linked, ancestor_approved;
    const char *path;
    const char *ancestors[3];
    const char *refs[2];
    const char *claimed;
    /* expected */
    bool allow;
    const char *rule;
    const char *reason_has;
} dcase;

#define ENF_UL "{\"mode\":\"enforce\",\"require_approval\":\"unknown-lineage\"}"
#define AUD_UL "{\"mode\":\"audit\",\"require_approval\":\"unknown-lineage\"}"
#define ENF_NEVER "{\"mode\":\"enforce\",\"require_approval\":\"never\"}"
#define ENF_ALWAYS "{\"mode\":\"enforce\",\"require_approval\":\"always\"}"
#define DENY_LLAMA "{\"mode\":\"enforce\",\"deny_families\":[\"/bases/llama*\",\"*LLAMA*\"]}"
#define ALLOW_BASES "{\"mode\":\"enforce\",\"allow_families\":[\"/bases/*\",\"meta--*\"]}"
#define ENF_NEVER_BP "{\"mode\":\"enforce\",\"require_approval\":\"never\",\"block_pending\":true}"

/* clang-format off */
/* name, policy, status, approved, linked, ancestor_approved, path, ancestors, refs, claimed family
 * → allow, rule, part of the reason */
static const dcase dcases[] = {
    /* mode */
    {"off allows a fresh unrelated model", "{\"mode\":\"off\",\"require_approval\":\"always\"}",
     "ready", false, false, false, "/new", {0}, {0}, NULL,
     true, "off", "off"},
    {"audit: fresh unrelated is a would-be block", AUD_UL,
     "ready", false, false, false, "/new", {0}, {0}, NULL,
     false, "require_approval", "lineage is unknown"},
    {"enforce: fresh unrelated is blocked", ENF_UL,
     "ready", false, false, false, "/new", {0}, {0}, NULL,
     false, "require_approval", "no derived or identical ancestor"},
    /* approvals and lineage */
    {"approved content is allowed", ENF_UL,
     "ready", true, false, false, "/new", {0}, {0}, NULL,
     true, "approval", "approved"},
    {"fine-tune of an approved base, no approval of its own", ENF_UL,
     "ready", false, true, true, "/ft/tiny-chat", {"/bases/tiny"}, {0}, NULL,
     true, "require_approval", "approved ancestor via /bases/tiny"},
    {"grandchild of an approved root", ENF_UL,
     "ready", false, true, true, "/ft/tiny-chat-2", {"/ft/tiny-chat", "/bases/tiny"}, {0}, NULL,
     true, "require_approval", "approved ancestor"},
    {"fine-tune of an unapproved base is blocked", ENF_UL,
     "ready", false, true, false, "/ft/tiny-chat", {"/bases/unknown"}, {0}, NULL,
     false, "require_approval", "parent /bases/unknown"},
    {"reference match is known lineage", ENF_UL,
     "ready", false, true, false, "/m/llama-ft", {0}, {"meta--llama"}, "llama",
     true, "require_approval", "reference family meta--llama"},
    {"reference match of an ancestor is known lineage", ENF_UL,
     "ready", false, true, false, "/m/ft", {"/m/base"}, {"mistralai--mistral"}, NULL,
     true, "require_approval", "reference"},
    /* deny_families */
    {"ancestor family denied though its config claims another", DENY_LLAMA,
     "ready", false, true, false, "/ft/not-llama", {"/bases/llama-3-8b"}, {0}, "mistral",
     false, "deny_families", "ancestor /bases/llama-3-8b matches deny_families \"/bases/llama*\""},
    {"deny reason names the claimed family", DENY_LLAMA,
     "ready", false, true, false, "/ft/not-llama", {"/bases/llama-3-8b"}, {0}, "mistral",
     false, "deny_families", "its config claims \"mistral\""},
    {"deny beats an approved ancestor", DENY_LLAMA,
     "ready", false, true, true, "/ft/x", {"/bases/llama-2"}, {0}, NULL,
     false, "deny_families", "ancestor"},
    {"deny matches reference families ignoring case", DENY_LLAMA,
     "ready", false, true, false, "/m/x", {0}, {"meta--llama"}, NULL,
     false, "deny_families", "reference family meta--llama matches deny_families \"*LLAMA*\""},
    {"deny matches the model's own path", DENY_LLAMA,
     "ready", false, false, false, "/bases/llama-copy", {0}, {0}, NULL,
     false, "deny_families", "path /bases/llama-copy"},
    {"deny: '*' crosses '/'", DENY_LLAMA,
     "ready", false, false, false, "/bases/llama/7b/chat", {0}, {0}, NULL,
     false, "deny_families", "path"},
    {"deny is case-sensitive on paths",
     "{\"mode\":\"enforce\",\"require_approval\":\"never\",\"deny_families\":[\"/bases/llama*\"]}",
     "ready", false, false, false, "/Bases/Llama", {0}, {0}, NULL,
     true, "require_approval", "not required"},
    {"deny ignores the self-declared config family",
     "{\"mode\":\"enforce\",\"require_approval\":\"never\",\"deny_families\":[\"llama\"]}",
     "ready", false, false, false, "/m/yi", {0}, {0}, "llama",
     true, "require_approval", "not required"},
    {"an approval of this exact content overrides deny", DENY_LLAMA,
     "ready", true, true, false, "/ft/x", {"/bases/llama-2"}, {0}, NULL,
     true, "approval", "approved"},
    {"deny applies while pending",
     "{\"mode\":\"enforce\",\"require_approval\":\"never\",\"deny_families\":[\"/quarantine/*\"]}",
     "pending", false, false, false, "/quarantine/x", {0}, {0}, NULL,
     false, "deny_families", "path"},
    /* allow_families */
    {"allow list: ancestor path matches", ALLOW_BASES,
     "ready", false, true, false, "/ft/a", {"/bases/tiny"}, {0}, NULL,
     true, "allow_families", "ancestor /bases/tiny matches allow_families \"/bases/*\""},
    {"allow list: reference family matches ignoring case", ALLOW_BASES,
     "ready", false, true, false, "/m/a", {0}, {"Meta--Llama"}, NULL,
     true, "allow_families", "reference family"},
    {"allow list: own path matches", ALLOW_BASES,
     "ready", false, false, false, "/bases/new", {0}, {0}, NULL,
     true, "allow_families", "path /bases/new"},
    {"allow list: a reference match outside the list is unknown lineage", ALLOW_BASES,
     "ready", false, true, false, "/m/a", {0}, {"mistralai--mistral"}, NULL,
     false, "allow_families", "matches allow_families"},
    {"allow list: unrelated model blocked", ALLOW_BASES,
     "ready", false, false, false, "/m/b", {0}, {0}, NULL,
     false, "allow_families", "not approved"},
    {"allow list: approved ancestor still counts", ALLOW_BASES,
     "ready", false, true, true, "/m/c", {"/elsewhere/base"}, {0}, NULL,
     true, "require_approval", "approved ancestor"},
    {"allow list has no effect under never",
     "{\"mode\":\"enforce\",\"require_approval\":\"never\",\"allow_families\":[\"/bases/*\"]}",
     "ready", false, false, false, "/m/b", {0}, {0}, NULL,
     true, "require_approval", "not required"},
    /* require_approval never / always */
    {"never: fresh unrelated allowed", ENF_NEVER,
     "ready", false, false, false, "/new", {0}, {0}, NULL,
     true, "require_approval", "not required"},
    {"always: fine-tune of an approved base still needs its own", ENF_ALWAYS,
     "ready", false, true, true, "/ft/a", {"/bases/tiny"}, {0}, NULL,
     false, "require_approval", "always"},
    {"always: reference match still needs approval", ENF_ALWAYS,
     "ready", false, true, false, "/ft/a", {0}, {"meta--llama"}, NULL,
     false, "require_approval", "always"},
    {"always: approved allowed", ENF_ALWAYS,
     "ready", true, false, false, "/new", {0}, {0}, NULL,
     true, "approval", "approved"},
    /* failed */
    {"failed under enforce is blocked", ENF_NEVER,
     "failed", false, false, false, "/bad", {0}, {0}, NULL,
     false, "failed", "analysis failed"},
    {"failed with an approved ancestor is blocked", ENF_UL,
     "failed", false, true, true, "/bad", {"/bases/tiny"}, {0}, NULL,
     false, "failed", "analysis failed"},
    {"failed but approved is allowed", ENF_NEVER,
     "failed", true, false, false, "/bad", {0}, {0}, NULL,
     true, "approval", "approved"},
    {"failed under audit is a would-be block", AUD_UL,
     "failed", false, false, false, "/bad", {0}, {0}, NULL,
     false, "failed", "analysis failed"},
    {"an unknown status reads as failed", ENF_NEVER,
     "exploded", false, false, false, "/bad", {0}, {0}, NULL,
     false, "failed", "analysis failed"},
    /* block_pending */
    {"block_pending: pending blocked even under never", ENF_NEVER_BP,
     "pending", false, false, false, "/up", {0}, {0}, NULL,
     false, "block_pending", "pending analysis"},
    {"block_pending: analyzing blocked", ENF_NEVER_BP,
     "analyzing", false, true, true, "/up", {"/bases/tiny"}, {0}, NULL,
     false, "block_pending", "being analysed"},
    {"block_pending: approved pending allowed", ENF_NEVER_BP,
     "pending", true, false, false, "/up", {0}, {0}, NULL,
     true, "approval", "approved"},
    {"block_pending: ready is not affected", ENF_NEVER_BP,
     "ready", false, false, false, "/up", {0}, {0}, NULL,
     true, "require_approval", "not required"},
    {"no block_pending: pending judged on what is known (never)", ENF_NEVER,
     "pending", false, false, false, "/up", {0}, {0}, NULL,
     true, "require_approval", "not required"},
    {"no block_pending: pending judged on what is known (unknown-lineage)", ENF_UL,
     "analyzing", false, false, false, "/up", {0}, {0}, NULL,
     false, "require_approval", "unknown"},
    {"no block_pending: pending fine-tune of an approved base", ENF_UL,
     "pending", false, true, true, "/up", {"/bases/tiny"}, {0}, NULL,
     true, "require_approval", "approved ancestor"},
    /* incomplete */
    {"incomplete: unknown lineage needs approval", ENF_UL,
     "incomplete", false, false, false, "/half", {0}, {0}, NULL,
     false, "require_approval", "unknown"},
    {"incomplete: allowed under never", ENF_NEVER,
     "incomplete", false, false, false, "/half", {0}, {0}, NULL,
     true, "require_approval", "not required"},
};
/* clang-format on */

static size_t count_strings(const char *const *list, size_t max)
{
    size_t n = 0;
    while (n < max && list[n])
        n++;
    return n;
}

static void test_decisions(void)
{
    for (size_t i = 0; i < sizeof dcases / sizeof *dcases; i++) {
        const dcase *c = &dcases[i];
        policy *p = parse_ok(c->policy_json);
        if (!p)
            continue;
        const char *paths[1] = {c->path};
        policy_model m = {
            .status = policy_status_parse(c->status),
            .approved = c->approved,
            .has_linked_ancestor = c->linked,
            .ancestor_approved = c->ancestor_approved,
            .paths = paths,
            .n_paths = 1,
            .ancestor_paths = c->ancestors,
            .n_ancestor_paths = count_strings(c->ancestors, 3),
            .ref_families = c->refs,
            .n_ref_families = count_strings(c->refs, 2),
            .claimed_family = c->claimed,
        };
        policy_decision d;
        policy_decide(p, &m, &d);
        CHECK_MSG(d.allow == c->allow, "%s: got %s (%s: %s)", c->name, policy_decision_name(&d),
                  d.rule, d.reason);
        CHECK_MSG(d.rule && strcmp(d.rule, c->rule) == 0, "%s: rule %s, want %s", c->name, d.rule,
                  c->rule);
        CHECK_MSG(strstr(d.reason, c->reason_has) != NULL, "%s: reason '%s' lacks '%s'", c->name,
                  d.reason, c->reason_has);
        CHECK_MSG(d.reason[0] && !strchr(d.reason, '\n'), "%s: reason not one line", c->name);
        policy_mode mode = policy_get_mode(p);
        CHECK_INT(d.mode, mode);
        CHECK_MSG(d.enforced == (!c->allow && mode == POLICY_ENFORCE), "%s: enforced %d", c->name,
                  d.enforced);
        CHECK_MSG(d.logged == (!c->allow && mode != POLICY_OFF), "%s: logged %d", c->name,
                  d.logged);
        const char *ev = policy_event_decision(&d);
        if (c->allow)
            CHECK_MSG(ev == NULL, "%s: event for an allow", c->name);
        else
            CHECK_MSG(ev && strcmp(ev, mode == POLICY_ENFORCE ? "refused" : "would-refuse") == 0,
                      "%s: event %s", c->name, ev ? ev : "(null)");
        policy_free(p);
    }
}

/* Audit and enforce reach the same verdict; only the flags differ. */
static void test_audit_flags(void)
{
    policy *aud = parse_ok(AUD_UL), *enf = parse_ok(ENF_UL);
    if (!aud || !enf)
        return;
    const char *paths[1] = {"/new"};
    policy_model m = {.status = POLICY_READY, .paths = paths, .n_paths = 1};
    policy_decision a, e;
    policy_decide(aud, &m, &a);
    policy_decide(enf, &m, &e);
    CHECK(!a.allow && !e.allow);
    CHECK_STR(a.rule, e.rule);
    CHECK_STR(a.reason, e.reason);
    CHECK(!a.enforced && a.logged);
    CHECK(e.enforced && e.logged);
    CHECK_STR(policy_approval_label(false, &a), "unapproved");
    CHECK_STR(policy_approval_label(false, &e), "blocked");
    CHECK_STR(policy_approval_label(true, &e), "approved");
    CHECK_STR(policy_approval_label(false, NULL), "not-required");

    cJSON *j = policy_decision_to_json(&a);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(text && strstr(text, "\"decision\":\"block\"") && strstr(text, "\"enforced\":false") &&
          strstr(text, "\"mode\":\"audit\"") && strstr(text, "\"rule\":\"require_approval\""));
    free(text);
    cJSON_Delete(j);

    /* Empty model description: no paths at all. */
    policy_model empty = {.status = POLICY_READY};
    policy_decide(enf, &empty, &e);
    CHECK(!e.allow);
    m.approved = true;
    policy_decide(enf, &m, &e);
    CHECK(e.allow && !e.enforced && !e.logged);
    CHECK_STR(policy_approval_label(true, &e), "approved");
    m.approved = false;
    m.ancestor_approved = true;
    m.has_linked_ancestor = true;
    policy_decide(enf, &m, &e);
    CHECK(e.allow);
    CHECK_STR(policy_approval_label(false, &e), "not-required");
    policy_free(aud);
    policy_free(enf);
}

/* Several parents: a blocked parent besides the main one blocks (rule parents), even when the
 * main parent is approved and approval is not required; the model's own approval still wins. */
static void test_blocked_parent(void)
{
    policy *enf = parse_ok(ENF_UL);
    policy *never = parse_ok("{\"mode\":\"enforce\",\"require_approval\":\"never\"}");
    if (!enf || !never) {
        policy_free(enf);
        policy_free(never);
        return;
    }
    const char *paths[1] = {"/stitch"}, *anc[1] = {"/a"};
    policy_model m = {.status = POLICY_READY, .paths = paths, .n_paths = 1,
                      .has_linked_ancestor = true, .ancestor_approved = true,
                      .ancestor_paths = anc, .n_ancestor_paths = 1};
    policy_decision d;
    policy_decide(enf, &m, &d);
    CHECK(d.allow);
    m.blocked_parent = "parent /b: not approved";
    policy_decide(enf, &m, &d);
    CHECK(!d.allow && d.enforced);
    CHECK_STR(d.rule, "parents");
    CHECK(strstr(d.reason, "parent /b: not approved") != NULL);
    policy_decide(never, &m, &d);
    CHECK(!d.allow);
    CHECK_STR(d.rule, "parents");
    m.approved = true;
    policy_decide(enf, &m, &d);
    CHECK(d.allow);
    CHECK_STR(d.rule, "approval");
    policy_free(enf);
    policy_free(never);
}

/* An unsafe pickle is blocked before approvals are looked at; only allow_unsafe_pickle lifts
 * that, and then the unit is judged as any failed unit (its approval allows it). */
static void test_unsafe_pickle(void)
{
    policy *enf = parse_ok(ENF_NEVER);
    policy *aud = parse_ok("{\"mode\":\"audit\",\"require_approval\":\"never\"}");
    policy *lift = parse_ok("{\"mode\":\"enforce\",\"allow_unsafe_pickle\":true}");
    policy *off = parse_ok("{\"mode\":\"off\"}");
    if (!enf || !aud || !lift || !off)
        goto out;
    CHECK(policy_allow_unsafe_pickle(lift) && !policy_allow_unsafe_pickle(enf));
    const char *paths[1] = {"/evil.bin"};
    policy_model m = {.status = POLICY_FAILED, .paths = paths, .n_paths = 1,
                      .approved = true, .ancestor_approved = true, .has_linked_ancestor = true,
                      .unsafe_global = "posix.system"};
    policy_decision d;
    policy_decide(enf, &m, &d);
    CHECK(!d.allow && d.enforced && d.logged);
    CHECK_STR(d.rule, "unsafe_pickle");
    CHECK_MSG(strstr(d.reason, "posix.system") && strstr(d.reason, "allow_unsafe_pickle"), "%s",
              d.reason);
    CHECK_STR(policy_approval_label(false, &d), "blocked");
    policy_decide(aud, &m, &d);
    CHECK(!d.allow && !d.enforced && d.logged);
    CHECK_STR(d.rule, "unsafe_pickle");
    CHECK_STR(policy_event_decision(&d), "would-refuse");
    /* allowed: the approval decides again; without one it is a failed unit */
    policy_decide(lift, &m, &d);
    CHECK(d.allow);
    CHECK_STR(d.rule, "approval");
    m.approved = false;
    policy_decide(lift, &m, &d);
    CHECK(!d.allow);
    CHECK_STR(d.rule, "failed");
    policy_decide(off, &m, &d);
    CHECK(d.allow);
    /* no unsafe global: an approved failed unit is allowed */
    m.unsafe_global = NULL;
    m.approved = true;
    policy_decide(enf, &m, &d);
    CHECK(d.allow);
    cJSON *j = policy_to_json(lift);
    const cJSON *k = j ? cJSON_GetObjectItemCaseSensitive(j, "allow_unsafe_pickle") : NULL;
    CHECK(cJSON_IsTrue(k));
    cJSON_Delete(j);
out:
    policy_free(enf);
    policy_free(aud);
    policy_free(lift);
    policy_free(off);
}

static void test_helpers(void)
{
    CHECK_INT(policy_status_parse("pending"), POLICY_PENDING);
    CHECK_INT(policy_status_parse("analyzing"), POLICY_ANALYZING);
    CHECK_INT(policy_status_parse("ready"), POLICY_READY);
    CHECK_INT(policy_status_parse("incomplete"), POLICY_INCOMPLETE);
    CHECK_INT(policy_status_parse("failed"), POLICY_FAILED);
    CHECK_INT(policy_status_parse(NULL), POLICY_FAILED);
    CHECK_INT(policy_status_parse("READY"), POLICY_FAILED);
    CHECK_STR(policy_status_name(POLICY_ANALYZING), "analyzing");

    CHECK(!policy_file_gated("config.json"));
    CHECK(!policy_file_gated(".provenance"));
    CHECK(!policy_file_gated("README.md"));
    CHECK(!policy_file_gated("LICENSE"));
    CHECK(policy_file_gated("model.safetensors"));
    CHECK(policy_file_gated("model-00001-of-00002.safetensors"));
    CHECK(policy_file_gated("model.safetensors.index.json"));
    CHECK(policy_file_gated("tokenizer.json"));
    CHECK(policy_file_gated("modeling_evil.py"));
    CHECK(policy_file_gated("weights.txt")); /* names do not decide what a file is */
    CHECK(policy_file_gated("sub/config.json"));
    CHECK(policy_file_gated("Config.json"));
    CHECK(policy_file_gated(NULL));

    char note[POLICY_NOTE_MAX + 1], err[256];
    CHECK(policy_note_parse("ticket SEC-12", 13, note, err, sizeof err) == 0);
    CHECK_STR(note, "ticket SEC-12");
    CHECK(policy_note_parse("reviewed\n", 9, note, err, sizeof err) == 0);
    CHECK_STR(note, "reviewed");
    CHECK(policy_note_parse("with nul", 9, note, err, sizeof err) == 0); /* trailing NUL */
    CHECK_STR(note, "with nul");
    CHECK(policy_note_parse("", 0, note, err, sizeof err) == 0 && note[0] == '\0');
    CHECK(policy_note_parse(NULL, 0, note, err, sizeof err) == 0 && note[0] == '\0');
    const char *utf8 = "gepr\xc3\xbc"
                       "ft \xe2\x9c\x93";
    CHECK(policy_note_parse(utf8, strlen(utf8), note, err, sizeof err) == 0);
    CHECK_STR(note, utf8);
    CHECK(policy_note_parse("a\nb", 3, note, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "control character at byte 1") != NULL, "%s", err);
    CHECK(policy_note_parse("a\0b", 3, note, err, sizeof err) == -1);
    CHECK(policy_note_parse("\x1b[31m", 5, note, err, sizeof err) == -1);
    CHECK(policy_note_parse("\xc3", 1, note, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "UTF-8") != NULL, "%s", err);
    CHECK(policy_note_parse("\xc0\xaf", 2, note, err, sizeof err) == -1);     /* overlong */
    CHECK(policy_note_parse("\xed\xa0\x80", 3, note, err, sizeof err) == -1); /* surrogate */
    CHECK(policy_note_parse("\xc2\x9b", 2, note, err, sizeof err) == -1);     /* C1 CSI */
    char *longnote = malloc(POLICY_NOTE_MAX + 2);
    if (longnote) {
        memset(longnote, 'n', POLICY_NOTE_MAX + 1);
        CHECK(policy_note_parse(longnote, POLICY_NOTE_MAX, note, err, sizeof err) == 0);
        CHECK_INT(strlen(note), POLICY_NOTE_MAX);
        CHECK(policy_note_parse(longnote, POLICY_NOTE_MAX + 1, note, err, sizeof err) == -1);
        CHECK_MSG(strstr(err, "at most 1024") != NULL, "%s", err);
        free(longnote);
    }

    const char *d1 = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";
    const char *d2 = "9f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";
    CHECK(policy_approval_binds(d1, d1));
    CHECK(!policy_approval_binds(d1, d2));
    CHECK(!policy_approval_binds("", ""));
    CHECK(!policy_approval_binds(NULL, d1));
    CHECK(!policy_approval_binds("abc", "abc"));
    CHECK(
        !policy_approval_binds("8F434346648F6B96DF89DDA901C5176B10A6D83961DD3C1AC88B59B2DC327AA4",
                               "8F434346648F6B96DF89DDA901C5176B10A6D83961DD3C1AC88B59B2DC327AA4"));

    cJSON *j = policy_approval_to_json("approved", "approved", 0, 1700000000, "SEC-12");
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK_MSG(text && strcmp(text, "{\"state\":\"approved\",\"record\":{\"state\":\"approved\","
                                   "\"by_uid\":0,\"at\":\"2023-11-14T22:13:20Z\","
                                   "\"note\":\"SEC-12\"}}") == 0,
              "%s", text ? text : "(null)");
    free(text);
    cJSON_Delete(j);
    j = policy_approval_to_json("blocked", NULL, 0, 0, NULL);
    text = j ? cJSON_PrintUnformatted(j) : NULL;
    CHECK(text && strcmp(text, "{\"state\":\"blocked\",\"record\":null}") == 0);
    free(text);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ refcount and reload */

typedef struct reader_ctx {
    policy_slot *slot;
    atomic_int stop;
    atomic_long reads;
    atomic_int bad;
} reader_ctx;

static void *reader_main(void *arg)
{
    reader_ctx *ctx = arg;
    const char *paths[1] = {"/new"};
    policy_model m = {.status = POLICY_READY, .paths = paths, .n_paths = 1};
    while (!atomic_load(&ctx->stop)) {
        policy *p = policy_slot_get(ctx->slot);
        if (!p) {
            atomic_fetch_add(&ctx->bad, 1);
            continue;
        }
        policy_decision d;
        policy_decide(p, &m, &d);
        /* Either policy of the swap: audit (would-be block) or never (allow); never torn. */
        policy_mode mode = policy_get_mode(p);
        bool ok = (mode == POLICY_AUDIT && !d.allow && !d.enforced) ||
                  (mode == POLICY_ENFORCE && d.allow);
        if (!ok)
            atomic_fetch_add(&ctx->bad, 1);
        policy_unref(p);
        atomic_fetch_add(&ctx->reads, 1);
    }
    return NULL;
}

static void test_refcount_swap(void)
{
    char good1[256], good2[256], bad[256], err[512];
    snprintf(good1, sizeof good1, "%s/p1.json", tmpdir);
    snprintf(good2, sizeof good2, "%s/p2.json", tmpdir);
    snprintf(bad, sizeof bad, "%s/p3.json", tmpdir);
    write_text(good1, AUD_UL);
    write_text(good2, ENF_NEVER);
    write_text(bad, "{\"mode\": \"enforcing\"}");

    policy *first = NULL;
    CHECK(policy_load(good1, &first, err, sizeof err) == 0);
    policy_slot *slot = policy_slot_create(first);
    CHECK(slot != NULL);
    if (!slot)
        return;
    /* A reader holds the old policy across a reload. */
    policy *held = policy_slot_get(slot);
    CHECK(held == first);
    CHECK(policy_slot_reload(slot, good2, err, sizeof err) == 0);
    CHECK_INT(policy_get_mode(held), POLICY_AUDIT); /* still valid (ASan would say otherwise) */
    policy *now = policy_slot_get(slot);
    CHECK(now && now != held && policy_get_mode(now) == POLICY_ENFORCE);
    CHECK(policy_serial(now) > policy_serial(held));
    policy_unref(held); /* the last reference: freed here */
    /* An invalid file keeps the active policy. */
    CHECK(policy_slot_reload(slot, bad, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "p3.json: \"mode\" must be off, audit or enforce") != NULL, "%s", err);
    policy *still = policy_slot_get(slot);
    CHECK(still == now);
    policy_unref(still);
    policy_unref(now);
    /* policy_ref / policy_unref pair up. */
    policy *d = policy_default();
    CHECK(policy_ref(d) == d);
    policy_unref(d);
    policy_free(d);
    CHECK(policy_ref(NULL) == NULL);
    policy_unref(NULL);

    /* Readers decide in a loop while the main thread swaps policies. */
    reader_ctx ctx = {.slot = slot};
    pthread_t th[2];
    int started = 0;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, reader_main, &ctx) == 0)
            started++;
    CHECK_INT(started, 2);
    for (int i = 0; i < 400; i++) {
        CHECK(policy_slot_reload(slot, i % 2 ? good1 : good2, err, sizeof err) == 0);
        if (i % 50 == 0)
            CHECK(policy_slot_reload(slot, bad, err, sizeof err) == -1);
    }
    while (atomic_load(&ctx.reads) < 1000)
        usleep(1000);
    atomic_store(&ctx.stop, 1);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    CHECK_INT(atomic_load(&ctx.bad), 0);
    policy_slot_destroy(slot);

    policy_slot *empty = policy_slot_create(NULL);
    CHECK(empty && policy_slot_get(empty) == NULL);
    policy_slot_destroy(empty);
}

/* ------------------------------------------------------------------ provctl's policy commands */

/* Runs a shell command; returns its exit status and (when out is non-NULL) its stdout. */
static int run(const char *cmd, char **out)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = calloc(1, cap);
    size_t r;
    while (buf && n + 1 < cap && (r = fread(buf + n, 1, cap - 1 - n, f)) > 0)
        n += r;
    int status = pclose(f);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void make_unit(const char *dir, const char *provenance)
{
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/.provenance", dir);
    write_text(path, provenance);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_text(path, "x");
}

static const char prov_fmt[] =
    "{\"schema\": \"provfs.provenance/1\", \"path\": \"/work/%s\", \"status\": \"%s\", "
    "\"model\": true, \"id\": \"%s\", \"approval\": \"%s\", "
    "\"lineage\": {\"parent\": {\"path\": \"/bases/tiny\", \"id\": \"1\", \"score\": 0.98765, "
    "\"verdict\": \"derived\"}, \"ancestors\": [{\"path\": \"/bases/tiny\", \"id\": \"1\", "
    "\"score\": 0.98765, \"verdict\": \"derived\"}, {\"path\": null, \"id\": \"a\", "
    "\"score\": 0.9, \"verdict\": \"derived\"}], \"children\": [{\"path\": \"/work/kid\", "
    "\"id\": \"7\", \"score\": 0.95, \"verdict\": \"identical\", \"is_parent\": true}]}, "
    "\"policy\": {\"decision\": \"%s\", \"reason\": \"%s\", \"rule\": \"%s\", "
    "\"mode\": \"enforce\", \"enforced\": %s}}\n";

static void test_provctl_check_lineage(const char *provctl)
{
    char dir[256], text[2048], cmd[1024];
    char *out = NULL;
    snprintf(dir, sizeof dir, "%s/store", tmpdir);
    mkdir(dir, 0755);
    snprintf(text, sizeof text, "{\"schema\": \"provfs.store/1\"}\n");
    char path[512];
    snprintf(path, sizeof path, "%s/.provenance", dir);
    write_text(path, text);

    snprintf(path, sizeof path, "%s/ok", dir);
    snprintf(text, sizeof text, prov_fmt, "ok", "ready", "2", "not-required", "allow",
             "known lineage: derives from an approved ancestor via /bases/tiny", "require_approval",
             "false");
    make_unit(path, text);
    snprintf(path, sizeof path, "%s/bad", dir);
    snprintf(text, sizeof text, prov_fmt, "bad", "ready", "3", "blocked", "block",
             "not approved, and its lineage is unknown", "require_approval", "true");
    make_unit(path, text);
    snprintf(path, sizeof path, "%s/audit", dir); /* a would-be block also fails the gate */
    snprintf(text, sizeof text, prov_fmt, "audit", "ready", "4", "unapproved", "block",
             "ancestor /bases/llama matches deny_families", "deny_families", "false");
    make_unit(path, text);
    snprintf(path, sizeof path, "%s/plain", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/plain/.provenance", dir);
    write_text(path, "{\"schema\": \"provfs.provenance/1\", \"path\": \"/plain\", "
                     "\"status\": null, \"model\": false}\n");

    snprintf(cmd, sizeof cmd, "%s check %s/ok", provctl, dir);
    CHECK_INT(run(cmd, &out), 0);
    CHECK_MSG(out && strstr(out, "allow [require_approval]"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s check %s/ok/model.safetensors", provctl, dir);
    CHECK_INT(run(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "%s check %s/bad", provctl, dir);
    CHECK_INT(run(cmd, &out), 3);
    CHECK_MSG(out && strstr(out, "block [require_approval]") && strstr(out, "lineage is unknown"),
              "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s check %s/audit --json", provctl, dir);
    CHECK_INT(run(cmd, &out), 3);
    CHECK_MSG(out && strstr(out, "\"allowed\":\tfalse") && strstr(out, "provfs.check/1"), "%s",
              out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s check %s/plain 2>&1", provctl, dir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "plain: not a model unit"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s check %s 2>&1", provctl, dir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "store root"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s check %s/missing 2>&1", provctl, dir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "missing: No such file"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s check %s 2>&1", provctl, tmpdir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "not in a provfs store"), "%s", out ? out : "");
    free(out);
    /* approve refuses outside a store before touching any xattr. */
    snprintf(cmd, sizeof cmd, "%s approve %s --note ok 2>&1", provctl, tmpdir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "not in a provfs store"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s approve %s/ok --note \"$(printf 'a\\033b')\" 2>&1", provctl, dir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "bad --note"), "%s", out ? out : "");
    free(out);

    snprintf(cmd, sizeof cmd, "%s lineage %s/ok", provctl, dir);
    CHECK_INT(run(cmd, &out), 0);
    CHECK_MSG(out && strstr(out, "/work/ok  ready  id 2") && strstr(out, "score 0.9877") &&
                  strstr(out, "(id a, no path)") && strstr(out, "/work/kid") &&
                  strstr(out, "(this is its parent)"),
              "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s lineage %s/ok --json", provctl, dir);
    CHECK_INT(run(cmd, &out), 0);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK(j != NULL);
    if (j) {
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "schema")), "provfs.lineage/1");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "store_path")), "/work/ok");
        CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ancestors")), 2);
        CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "children")), 1);
        CHECK_STR(
            cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "policy"), "decision")),
            "allow");
        cJSON_Delete(j);
    }
    free(out);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    CHECK_MSG(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
}

static void test_provctl_log(const char *provctl)
{
    char db_path[256], cmd[1024];
    char *out = NULL;
    /* A path that needs URI escaping. */
    snprintf(db_path, sizeof db_path, "%s/lineage 100%%?#.db", tmpdir);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    /* The schema POLICY.md proposes: version 1's events plus rule and decision. */
    exec_ok(db, "CREATE TABLE events (id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, uid "
                "INTEGER, pid INTEGER, path TEXT, model_id INTEGER, kind TEXT NOT NULL, detail "
                "TEXT, rule TEXT, decision TEXT);"
                "INSERT INTO events VALUES (1, 1700000000000000000, 0, 10, '/bases/tiny', 1,"
                " 'analyzed', 'digest ab', NULL, NULL);"
                "INSERT INTO events VALUES (2, 1700000002000000000, 1001, 4242, "
                "'/work/x/model.safetensors', 26, 'policy', 'not approved', "
                "'require_approval', 'refused');"
                "INSERT INTO events VALUES (3, 1700000001500000000, 0, 11, '/work/x', 26,"
                " 'approve', 'SEC-12', NULL, NULL);");
    sqlite3_close(db);

    snprintf(cmd, sizeof cmd, "%s log --db '%s'", provctl, db_path);
    CHECK_INT(run(cmd, &out), 0);
    const char *first = out ? strstr(out, "2023-11-14T22:13:22.000Z  policy") : NULL;
    const char *second = out ? strstr(out, "2023-11-14T22:13:21.500Z  approve") : NULL;
    const char *third = out ? strstr(out, "2023-11-14T22:13:20.000Z  analyzed") : NULL;
    CHECK_MSG(first && second && third && first < second && second < third, "not newest first:\n%s",
              out ? out : "");
    CHECK_MSG(out && strstr(out, "refused require_approval  uid=1001 pid=4242  "
                                 "/work/x/model.safetensors  model=1a  not approved"),
              "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s log --db '%s' --json --limit 2", provctl, db_path);
    CHECK_INT(run(cmd, &out), 0);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    cJSON *ev = j ? cJSON_GetObjectItem(j, "events") : NULL;
    CHECK_STR(j ? cJSON_GetStringValue(cJSON_GetObjectItem(j, "schema")) : "", "provfs.events/1");
    CHECK_INT(cJSON_GetArraySize(ev), 2);
    cJSON *e0 = cJSON_GetArrayItem(ev, 0);
    CHECK_STR(e0 ? cJSON_GetStringValue(cJSON_GetObjectItem(e0, "decision")) : "", "refused");
    CHECK_STR(e0 ? cJSON_GetStringValue(cJSON_GetObjectItem(e0, "rule")) : "", "require_approval");
    CHECK_STR(e0 ? cJSON_GetStringValue(cJSON_GetObjectItem(e0, "model_id")) : "", "1a");
    CHECK_STR(e0 ? cJSON_GetStringValue(cJSON_GetObjectItem(e0, "time")) : "",
              "2023-11-14T22:13:22.000Z");
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s log --db '%s' --kind approve --json", provctl, db_path);
    CHECK_INT(run(cmd, &out), 0);
    j = out ? cJSON_Parse(out) : NULL;
    CHECK_INT(cJSON_GetArraySize(j ? cJSON_GetObjectItem(j, "events") : NULL), 1);
    cJSON_Delete(j);
    free(out);

    /* Version 1 of the store: no rule/decision columns yet. */
    snprintf(db_path, sizeof db_path, "%s/v1.db", tmpdir);
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    exec_ok(db, "CREATE TABLE events (id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, uid "
                "INTEGER, pid INTEGER, path TEXT, model_id INTEGER, kind TEXT NOT NULL, detail "
                "TEXT); INSERT INTO events VALUES (1, 1700000000000000000, 0, 0, '/a', NULL, "
                "'removed', 'directory gone');");
    sqlite3_close(db);
    snprintf(cmd, sizeof cmd, "%s log --db %s", provctl, db_path);
    CHECK_INT(run(cmd, &out), 0);
    CHECK_MSG(out && strstr(out, "removed") && strstr(out, "/a  directory gone"), "%s",
              out ? out : "");
    free(out);

    /* No events table; not a database; no file. */
    snprintf(db_path, sizeof db_path, "%s/empty.db", tmpdir);
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    exec_ok(db, "CREATE TABLE models (id INTEGER PRIMARY KEY)");
    sqlite3_close(db);
    snprintf(cmd, sizeof cmd, "%s log --db %s 2>&1", provctl, db_path);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "empty.db: no events table yet"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s log --db %s/p1.json 2>&1", provctl, tmpdir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "p1.json: not a provfs database"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s log --db %s/none.db 2>&1", provctl, tmpdir);
    CHECK_INT(run(cmd, &out), 2);
    CHECK_MSG(out && strstr(out, "none.db: No such file"), "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s log 2>/dev/null", provctl);
    CHECK_INT(run(cmd, NULL), 2);
    /* The database was only read: no journal files appeared next to it. */
    snprintf(cmd, sizeof cmd, "ls %s | grep -q -- '-wal\\|-journal'", tmpdir);
    CHECK(system(cmd) != 0);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_load_valid();
    test_load_invalid();
    test_write_default();
    test_decisions();
    test_audit_flags();
    test_blocked_parent();
    test_unsafe_pickle();
    test_helpers();
    test_refcount_swap();
    const char *provctl = getenv("PROVCTL");
    if (provctl && *provctl) {
        test_provctl_check_lineage(provctl);
        test_provctl_log(provctl);
    } else {
        fprintf(stderr, "policy: PROVCTL not set, provctl checks skipped\n");
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "policy: cannot remove %s\n", tmpdir);
    return check_report("policy");
}
