/* The launcher at the head of an app file (envpack --create-executable --entrypoint).

   [launcher][entrypoint argv][static envunpack][head][archive][trailer]

   Warm run: the install in the app home is complete (its marker exists, written last):
   apply the precomputed activation (app.env) and execve the entrypoint. No envunpack, no
   libc, no shell (unless activate.d scripts need one).
   Cold run: take the install lock, copy the embedded envunpack into the app home and run it
   as a child to install there (it verifies every hash first), write the marker, then execve
   as on a warm run. A killed install has no marker and is redone with --force.

   Freestanding: raw syscalls for x86_64 and aarch64, built -static -nostdlib so the file
   runs on any Linux kernel with /proc, whatever its userland (or none). */

typedef unsigned long u64;
typedef long i64;

#if defined(__x86_64__)
enum { SYS_read = 0, SYS_write = 1, SYS_close = 3, SYS_lseek = 8, SYS_pread = 17,
       SYS_clone = 56, SYS_wait4 = 61, SYS_flock = 73, SYS_fsync = 74, SYS_exit = 231,
       SYS_openat = 257, SYS_mkdirat = 258, SYS_renameat = 264, SYS_readlinkat = 267,
       SYS_faccessat = 269, SYS_execve = 59,
       SYS_sendfile = 40, SYS_unlinkat = 263, SYS_getpid = 39 };
static i64 sys6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f) {
    i64 r;
    register i64 r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
                     "r"(r9) : "rcx", "r11", "memory");
    return r;
}
__asm__(".text\n.global _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n"
        " call start_c\n hlt\n");
#elif defined(__aarch64__)
enum { SYS_read = 63, SYS_write = 64, SYS_close = 57, SYS_lseek = 62, SYS_pread = 67,
       SYS_clone = 220, SYS_wait4 = 260, SYS_flock = 32, SYS_fsync = 82, SYS_exit = 94,
       SYS_openat = 56, SYS_mkdirat = 34, SYS_renameat = 38, SYS_readlinkat = 78,
       SYS_faccessat = 48, SYS_execve = 221,
       SYS_sendfile = 71, SYS_unlinkat = 35, SYS_getpid = 172 };
static i64 sys6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f) {
    register i64 x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b;
    register i64 x2 __asm__("x2") = c, x3 __asm__("x3") = d, x4 __asm__("x4") = e;
    register i64 x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n mov x29,#0\n mov x0,sp\n and sp,x0,#-16\n"
        " bl start_c\n brk #0\n");
#else
#error "the launcher is built for x86_64 and aarch64 only"
#endif

#define sys3(n, a, b, c) sys6(n, (i64)(a), (i64)(b), (i64)(c), 0, 0, 0)
enum { AT_FDCWD = -100, O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0100,
       O_TRUNC = 01000, O_EXCL = 0200, O_CLOEXEC = 02000000, O_DIRECTORY = 0200000, LOCK_EX = 2,
       SIGCHLD = 17, EINTR = 4, EEXIST = 17 };

/* Filled in by the packer (selfextract.app_block): where the argv block and envunpack lie
   in this file. The magic lets the packer find the struct; volatile keeps it in .data. */
struct app_block {
    char magic[16];
    u64 argv_offset, argv_length, unpacker_offset, unpacker_length;
};
volatile struct app_block APP = {"envpack-applnch", 0, 0, 0, 0};

static const char TRAILER_MAGIC[12] = "envpack-sfx\n";
enum { PATH_MAX_ = 4096, ARGV_MAX = 8192, ENV_MAX = 65536, MAX_ENV = 1024, MAX_ARGS = 4096 };

static u64 slen(const char *s) { u64 n = 0; while (s[n]) n++; return n; }
static int starts(const char *s, const char *p) {
    while (*p) if (*s++ != *p++) return 0;
    return 1;
}
static int same(const char *a, const char *b) { return starts(a, b) && slen(a) == slen(b); }
/* The value of NAME in envp, or 0. */
static const char *get(char **envp, const char *name) {
    u64 n = slen(name);
    for (; *envp; envp++)
        if (starts(*envp, name) && (*envp)[n] == '=') return *envp + n + 1;
    return 0;
}
static void out(int fd, const char *s) { sys3(SYS_write, fd, s, slen(s)); }
static const char *why(i64 err) {
    switch (-err) {
    case 2: return "no such file or directory";
    case 13: return "permission denied";
    case 20: return "a path component is not a directory";
    case 28: return "no space left on device";
    case 30: return "read-only file system";
    case 122: return "disk quota exceeded";
    default: return "system error";
    }
}
static __attribute__((noreturn)) void die(const char *a, const char *b, const char *c) {
    out(2, "error: ");
    out(2, a);
    if (b) out(2, b);
    if (c) out(2, c);
    out(2, "\n");
    sys3(SYS_exit, 1, 0, 0);
    for (;;) {}
}

/* A bump buffer for joined strings: nothing here is ever freed. */
static char heap[ENV_MAX * 2];
static u64 used;
static char *join(const char *a, const char *b, const char *c) {
    u64 la = slen(a), lb = b ? slen(b) : 0, lc = c ? slen(c) : 0;
    if (used + la + lb + lc + 1 > sizeof heap) die("paths too long", 0, 0);
    char *r = heap + used;
    for (u64 i = 0; i < la; i++) r[i] = a[i];
    for (u64 i = 0; i < lb; i++) r[la + i] = b[i];
    for (u64 i = 0; i < lc; i++) r[la + lb + i] = c[i];
    r[la + lb + lc] = 0;
    used += la + lb + lc + 1;
    return r;
}
static int exists(const char *path, int mode) {
    return sys6(SYS_faccessat, AT_FDCWD, (i64)path, mode, 0, 0, 0) == 0;
}

/* mkdir -p, with one error line that says which variable moves the app home. */
static void make_dirs(char *path) {
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p) continue;
        char saved = *p;
        *p = 0;
        i64 r = sys3(SYS_mkdirat, AT_FDCWD, path, 0755);
        *p = saved;
        if (r < 0 && r != -EEXIST)
            die("cannot create the app directory ", path,
                join(": ", why(r), "; set ENVPACK_APP_HOME to a writable directory"));
        if (!saved) return;
    }
}

static char argv_block[ARGV_MAX];
static char env_file[ENV_MAX];
static char *new_env[MAX_ENV + 8];
static char *new_argv[MAX_ARGS + 8];

/* Run the app: env from app.env (PATH entries are prepended), argv from the block. */
static __attribute__((noreturn)) void launch(const char *app, char **args, int nargs,
                                              char **envp) {
    const char *env_path = join(app, "/app.env", 0);
    i64 fd = sys3(SYS_openat, AT_FDCWD, env_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot read ", env_path, join(": ", why(fd), "; run with --envpack-uninstall"));
    i64 n = sys3(SYS_read, fd, env_file, sizeof env_file - 1);
    sys3(SYS_close, fd, 0, 0);
    if (n < 0 || n == (i64)sizeof env_file - 1) die("cannot read ", env_path, 0);
    env_file[n] = 0;
    int count = 0;
    /* Activation first; then every inherited variable it does not set. */
    for (char *e = env_file; e < env_file + n; e += slen(e) + 1) {
        if (count >= MAX_ENV) break;
        if (starts(e, "PATH=")) {
            const char *old = get(envp, "PATH");
            new_env[count++] = old && *old ? join(e, ":", old) : e;
        } else {
            new_env[count++] = e;
        }
    }
    int fixed = count;
    for (char **v = envp; *v && count < MAX_ENV; v++) {
        int shadowed = 0;
        for (int i = 0; i < fixed && !shadowed; i++) {
            u64 k = 0;
            while (new_env[i][k] && new_env[i][k] != '=' && new_env[i][k] == (*v)[k]) k++;
            shadowed = new_env[i][k] == '=' && (*v)[k] == '=';
        }
        if (!shadowed) new_env[count++] = *v;
    }
    new_env[count] = 0;

    int argc = 0;
    const char *shell_marker = join(app, "/app.activate-d", 0);
    int use_shell = exists(shell_marker, 0) && exists("/bin/sh", 1);
    if (use_shell) {
        /* activate.d scripts are shell code: source activate.sh, then exec the app. */
        new_argv[argc++] = "sh";
        new_argv[argc++] = "-c";
        new_argv[argc++] = ". \"$0/activate.sh\" && exec \"$@\"";
        new_argv[argc++] = (char *)app;
    }
    char *first = 0;
    for (char *a = argv_block; *a && argc < MAX_ARGS; a += slen(a) + 1) {
        char *arg = a;
        if (!first) {
            int has_slash = 0;
            for (char *c = a; *c; c++) has_slash |= *c == '/';
            first = has_slash ? a : join(app, "/env/bin/", a);
            arg = first;
        }
        new_argv[argc++] = arg;
    }
    for (int i = 0; i < nargs && argc < MAX_ARGS; i++) new_argv[argc++] = args[i];
    new_argv[argc] = 0;
    i64 r = sys3(SYS_execve, use_shell ? "/bin/sh" : first, new_argv, use_shell ? envp : new_env);
    die("cannot run ", first, join(": ", why(r), 0));
}

/* Run the embedded envunpack with ARGS and return its exit status. staticx reads its own
   program by the path /proc/self/exe names, so envunpack must be a real file: it is copied
   to PATH (under the install lock, or named by our pid) and removed afterwards. */
static int envunpack(i64 self_fd, const char *self, const char *path, char **args, char **envp) {
    sys3(SYS_unlinkat, AT_FDCWD, path, 0); /* a leftover of a killed run */
    i64 copy = sys6(SYS_openat, AT_FDCWD, (i64)path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                    0700, 0, 0);
    if (copy < 0)
        die("cannot write ", path, join(": ", why(copy), "; set TMPDIR or ENVPACK_APP_HOME"));
    i64 offset = (i64)APP.unpacker_offset;
    u64 left = APP.unpacker_length;
    while (left) {
        i64 r = sys6(SYS_sendfile, copy, self_fd, (i64)&offset,
                     (i64)(left > (1u << 30) ? 1u << 30 : left), 0, 0);
        if (r <= 0) {
            sys3(SYS_unlinkat, AT_FDCWD, path, 0);
            die("cannot copy envunpack to ", path, r < 0 ? join(": ", why(r), 0) : 0);
        }
        left -= (u64)r;
    }
    sys3(SYS_close, copy, 0, 0);
    int count = 0;
    new_env[count++] = join("ENVPACK_SELF=", self, 0);
    for (char **v = envp; *v && count < MAX_ENV; v++)
        if (!starts(*v, "ENVPACK_SELF=")) new_env[count++] = *v;
    new_env[count] = 0;
    i64 pid = sys6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (pid < 0) die("cannot start envunpack: ", why(pid), 0);
    if (pid == 0) {
        i64 r = sys3(SYS_execve, path, args, new_env);
        die("cannot start envunpack: ", why(r), 0);
    }
    int status = 0;
    i64 r;
    do r = sys6(SYS_wait4, pid, (i64)&status, 0, 0, 0, 0); while (r == -EINTR);
    sys3(SYS_unlinkat, AT_FDCWD, path, 0);
    if ((status & 0x7f) == 0) return (status >> 8) & 0xff;
    return 128 + (status & 0x7f);
}

/* For operator commands, which take no install lock: a name of our own in the temp dir. */
static const char *temp_copy(char **envp) {
    const char *t = get(envp, "TMPDIR");
    char pid_text[24];
    i64 pid = sys6(SYS_getpid, 0, 0, 0, 0, 0, 0);
    char digits[20];
    int k = 0, at = 0;
    for (i64 v = pid; v || !k; v /= 10) digits[k++] = (char)('0' + v % 10);
    while (k) pid_text[at++] = digits[--k];
    pid_text[at] = 0;
    return join(t && *t == '/' ? t : "/tmp", "/.envpack-envunpack-", pid_text);
}

static void hex(const unsigned char *in, char *o) {
    for (int i = 0; i < 32; i++) {
        o[2 * i] = "0123456789abcdef"[in[i] >> 4];
        o[2 * i + 1] = "0123456789abcdef"[in[i] & 15];
    }
    o[64] = 0;
}

__attribute__((used)) void start_c(long *sp) {
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1), **envp = argv + argc + 1;
    static char self[PATH_MAX_];
    i64 n = sys6(SYS_readlinkat, AT_FDCWD, (i64)"/proc/self/exe", (i64)self, sizeof self - 1, 0, 0);
    if (n < 0) die("cannot find this program's file: /proc is not mounted", 0, 0);
    self[n] = 0;
    i64 fd = sys3(SYS_openat, AT_FDCWD, "/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot read ", self, join(": ", why(fd), 0));
    i64 size = sys3(SYS_lseek, fd, 0, 2);
    unsigned char trailer[64];
    if (size < 64 || sys6(SYS_pread, fd, (i64)trailer, 64, size - 64, 0, 0) != 64)
        die(self, " is truncated: copy it again", 0);
    for (int i = 0; i < 12; i++)
        if (trailer[52 + i] != (unsigned char)TRAILER_MAGIC[i])
            die(self, " is truncated or was modified (its trailer is missing); copy it again", 0);
    if (APP.argv_length >= sizeof argv_block ||
        sys6(SYS_pread, fd, (i64)argv_block, (i64)APP.argv_length, (i64)APP.argv_offset, 0, 0) !=
            (i64)APP.argv_length)
        die(self, " is truncated: copy it again", 0);
    char sha[65];
    hex(trailer, sha);

    const char *home = get(envp, "ENVPACK_APP_HOME");
    if (!home || !*home) {
        const char *cache = get(envp, "XDG_CACHE_HOME");
        if (cache && *cache) {
            home = join(cache, "/envpack/apps", 0);
        } else {
            const char *user = get(envp, "HOME");
            if (!user || !*user) die("neither ENVPACK_APP_HOME nor HOME is set; set ENVPACK_APP_HOME to a writable directory", 0, 0);
            home = join(user, "/.cache/envpack/apps", 0);
        }
    }
    if (home[0] != '/') die("ENVPACK_APP_HOME must be an absolute path, not ", home, 0);
    char *app = join(home, "/", sha);
    const char *marker = join(app, "/.envpack-complete", 0);
    char **rest = argv + 1;
    int nrest = argc > 0 ? argc - 1 : 0;

    if (nrest && same(rest[0], "--envpack-info")) {
        out(1, join("payload sha256: ", sha, "\n"));
        out(1, join("install dir:    ", app, "\n"));
        out(1, join("installed:      ", exists(marker, 0) ? "yes" : "no", "\n"));
        out(1, "entrypoint:    ");
        for (char *a = argv_block; *a; a += slen(a) + 1) out(1, join(" ", a, 0));
        out(1, "\n");
        sys3(SYS_exit, 0, 0, 0);
    }
    if (nrest && same(rest[0], "--envpack-unpack")) {
        if (nrest != 2) die("--envpack-unpack needs one DIR: ./app --envpack-unpack /opt/app", 0, 0);
        char *args[] = {"envunpack", "-o", rest[1], 0};
        sys3(SYS_exit, envunpack(fd, self, temp_copy(envp), args, envp), 0, 0);
    }
    if (nrest && same(rest[0], "--envpack-uninstall")) {
        if (!exists(app, 0)) {
            out(2, join("not installed: ", app, "\n"));
            sys3(SYS_exit, 0, 0, 0);
        }
        /* Under the install lock: never remove what a first run is installing. */
        const char *lock_path = join(app, ".lock", 0);
        i64 lock = sys6(SYS_openat, AT_FDCWD, (i64)lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644,
                        0, 0);
        if (lock < 0) die("cannot open ", lock_path, join(": ", why(lock), 0));
        i64 r;
        do r = sys3(SYS_flock, lock, LOCK_EX, 0); while (r == -EINTR);
        char *args[] = {"envunpack", "--remove-app", app, 0};
        int status = envunpack(fd, self, temp_copy(envp), args, envp);
        sys3(SYS_unlinkat, AT_FDCWD, join(app, ".envunpack", 0), 0); /* a killed run's copy */
        sys3(SYS_exit, status, 0, 0);
    }
    if (!exists(marker, 0)) {
        make_dirs(app);
        const char *lock_path = join(app, ".lock", 0);
        i64 lock = sys6(SYS_openat, AT_FDCWD, (i64)lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644, 0, 0);
        if (lock < 0)
            die("cannot create ", lock_path,
                join(": ", why(lock), "; set ENVPACK_APP_HOME to a writable directory"));
        i64 r;
        do r = sys3(SYS_flock, lock, LOCK_EX, 0); while (r == -EINTR);
        if (!exists(marker, 0)) {
            /* --force: a killed run may have renamed its env into place without the marker. */
            char *args[] = {"envunpack", "-q", "--force", "--app", "-o", app, 0};
            /* Under the lock, one name per app: a copy left by a killed run is replaced. */
            int status = envunpack(fd, self, join(app, ".envunpack", 0), args, envp);
            if (status) sys3(SYS_exit, status, 0, 0);
            const char *part = join(marker, ".part", 0);
            i64 m = sys6(SYS_openat, AT_FDCWD, (i64)part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644, 0, 0);
            if (m < 0) die("cannot write ", part, join(": ", why(m), 0));
            sys3(SYS_write, m, sha, 64);
            sys3(SYS_fsync, m, 0, 0);
            sys3(SYS_close, m, 0, 0);
            /* The marker appears last, by one rename, after the install is on disk. */
            r = sys6(SYS_renameat, AT_FDCWD, (i64)part, AT_FDCWD, (i64)marker, 0, 0);
            if (r < 0) die("cannot write ", marker, join(": ", why(r), 0));
            i64 dir = sys3(SYS_openat, AT_FDCWD, app, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dir >= 0) { sys3(SYS_fsync, dir, 0, 0); sys3(SYS_close, dir, 0, 0); }
        }
        sys3(SYS_close, lock, 0, 0);
    }
    launch(app, rest, nrest, envp);
}
