/*
 * Keeps the served model's access token off tritonserver's command line.
 *
 * Triton reads the setting that protects its model-control endpoints (`--http-restricted-api` and
 * `--grpc-restricted-protocol`, "<endpoints>:<header>=<token>") from its command line only, and a command line is
 * world-readable in /proc/PID/cmdline. `m2f serve` therefore starts tritonserver with PLACEHOLDER in place of each
 * setting and this library preloaded (LD_PRELOAD). Before tritonserver's main() runs, the constructor below reads the
 * real setting from a file only its owner can read (named by M2F_RESTRICTED_FILE), deletes the file, and points those
 * argv entries at a heap copy. /proc/PID/cmdline keeps showing the placeholder: it reads the original argument
 * memory, not the argv array.
 *
 * A placeholder that was not swapped is not a valid setting: tritonserver refuses to start ("option format is
 * '<config name>:<setting>=<value>'"), so a failed swap never leaves a server running with a known token.
 *
 * glibc passes (argc, argv, envp) to the constructors of shared objects, which is what this relies on; tritonserver
 * is a glibc executable. The library restores LD_PRELOAD to what it was before m2f added it (M2F_LD_PRELOAD), so the
 * Python-backend stubs that tritonserver starts do not load it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLACEHOLDER "@m2f-restricted-setting@" /* serving/token.py PLACEHOLDER */
#define FILE_VARIABLE "M2F_RESTRICTED_FILE"
#define PRELOAD_VARIABLE "M2F_LD_PRELOAD"
#define MAX_SETTING_BYTES 4096

/* The file's contents without a trailing newline, on the heap; NULL if it cannot be read or is empty. */
static char *read_setting(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    char *setting = calloc(MAX_SETTING_BYTES + 1, 1);
    size_t size = 0;
    ssize_t got;
    while (setting && size < MAX_SETTING_BYTES &&
           (got = read(fd, setting + size, MAX_SETTING_BYTES - size)) > 0)
        size += (size_t)got;
    close(fd);
    unlink(path);
    while (size > 0 && (setting[size - 1] == '\n' || setting[size - 1] == '\r')) setting[--size] = '\0';
    if (setting && size == 0) {
        free(setting);
        return NULL;
    }
    return setting;
}

__attribute__((constructor)) static void swap_in_restricted_setting(int argc, char **argv, char **envp) {
    (void)envp;
    const char *path = getenv(FILE_VARIABLE);
    if (path == NULL) return;
    char *setting = read_setting(path);
    if (setting != NULL)
        for (int i = 1; i < argc; ++i)
            if (argv[i] != NULL && strcmp(argv[i], PLACEHOLDER) == 0) argv[i] = setting;
    unsetenv(FILE_VARIABLE);
    const char *before = getenv(PRELOAD_VARIABLE);
    if (before != NULL && before[0] != '\0')
        setenv("LD_PRELOAD", before, 1);
    else
        unsetenv("LD_PRELOAD");
    unsetenv(PRELOAD_VARIABLE);
}
