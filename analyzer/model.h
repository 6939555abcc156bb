/* A model unit on disk: which files make it up (private to the analyzer). */
#ifndef PA_MODEL_H
#define PA_MODEL_H
#include "provfs/analyzer.h"
#include "gguf.h"

#define PA_UNIT_MAX_FILES 10000u

typedef struct pa_shard {
    char *name; /* relative to the unit directory */
    char *path;
    uint64_t size;
    pa_st_header hdr; /* a torch checkpoint's too: data_offset 0, tensors at file offsets */
    bool torch;       /* a torch.save zip checkpoint, not safetensors */
} pa_shard;

typedef struct pa_unit {
    char *path;    /* the directory, or the single file */
    bool is_dir;
    char *config_path, *tok_path, *tokcfg_path, *index_path; /* NULL when absent */
    char *spm_path; /* tokenizer.model (SentencePiece), NULL when absent */
    char *adapter_path; /* adapter_config.json (a PEFT adapter: no config.json needed) */
    size_t n_shards;
    pa_shard *shards; /* sorted by name */
    bool is_gguf; /* a single GGUF file (detected by content, not by name) */
    pa_gguf gguf;
    size_t n_files;
    pa_file_fp *files; /* every regular file of the unit, sorted by name; sha256 empty */
    char **file_paths;
    /* Confinement (pa_fp_options.confine_root): every file is resolved beneath root_fd, never
     * through an absolute symlink, a ".." that leaves it or a magic link, and never inside
     * root/private; -1 when unconfined (provctl, as the user). */
    int root_fd;
    char *root_path;    /* the confinement root as given, no trailing slash ("" for "/") */
    char *private_path; /* root/private (no trailing slash), NULL when none */
    /* Files opened by the caller (pa_unit_open_given): every open is a copy of one of their fds,
     * nothing is opened by path; given_idx[i] is files[i]'s index in given. NULL otherwise. */
    const pa_unit_files *given;
    size_t *given_idx;
} pa_unit;

/* Discover a unit: a directory (Hugging Face layout: safetensors, or pytorch_model*.bin when it has
 * no safetensors), one .safetensors or torch.save file or one GGUF file. Parses every shard's
 * header. A sharded unit with missing or short shards gives PA_E_INCOMPLETE. */
pa_status pa_unit_open(const char *path, const pa_fp_options *opt, pa_unit *unit, pa_error *err);
/* The same from files the caller opened (pa_unit_files_open, possibly in another process): path
 * names the unit in messages and file paths; given must outlive the unit. */
pa_status pa_unit_open_given(const char *path, const pa_unit_files *given, pa_unit *unit,
                             pa_error *err);
/* Opens one file of the unit (path as in file_paths / shards / *_path) for reading, the way the
 * unit's confinement allows, and only when it is a regular file. The fd, or -1 with err set. */
int pa_unit_open_file(const pa_unit *unit, const char *path, pa_error *err);
/* Reads one file of the unit (at most limit bytes) through pa_unit_open_file. */
pa_status pa_unit_read_file(const pa_unit *unit, const char *path, size_t limit, char **out,
                            size_t *len, pa_error *err);
void pa_unit_free(pa_unit *unit);
#endif
