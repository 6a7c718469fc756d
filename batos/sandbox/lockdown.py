"""The OS layer of the sandbox: what a worker process does to itself before it
runs any method.

- ``PR_SET_PDEATHSIG``: the worker dies with the kernel (no orphans).
- resource limits: address space, total CPU time, no file may grow
  (``RLIMIT_FSIZE=0``), no new processes or threads (``RLIMIT_NPROC=0``), no
  core dumps, and no file descriptor beyond the two pipes to the kernel
  (``RLIMIT_NOFILE``), so it cannot open a file or a socket.
- ``PR_SET_NO_NEW_PRIVS`` and a seccomp filter (x86-64) that answers EPERM to
  the system calls that reach outside the process: opening, creating, renaming,
  deleting or changing files; sockets; fork, clone, exec; signals to other
  processes; ptrace and cross-process memory; raising limits; namespaces,
  mounts, keyrings, BPF, io_uring and the like.  System calls of another ABI
  (i386 via int 0x80, x32) kill the process.

Standard input, output and error are /dev/null: a method that escapes the
language guards still reads nothing and writes nowhere.
"""
from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
EPERM = 1
X32_SYSCALL_BIT = 0x40000000

# x86-64 system call numbers refused with EPERM once a worker is locked down
DENIED_X86_64 = {
    # files: open, create, rename, delete, change
    "open": 2, "openat": 257, "openat2": 437, "creat": 85, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "truncate": 76, "ftruncate": 77, "fallocate": 285,
    "rename": 82, "renameat": 264, "renameat2": 316, "mkdir": 83, "mkdirat": 258, "rmdir": 84,
    "link": 86, "linkat": 265, "unlink": 87, "unlinkat": 263, "symlink": 88, "symlinkat": 266,
    "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93,
    "lchown": 94, "fchownat": 260, "mknod": 133, "mknodat": 259, "utime": 132, "utimes": 235,
    "utimensat": 280, "futimesat": 261, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
    "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "chdir": 80, "fchdir": 81,
    "chroot": 161, "mount": 165, "umount2": 166, "pivot_root": 155, "swapon": 167,
    "swapoff": 168, "acct": 163, "quotactl": 179, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "inotify_init": 253, "inotify_init1": 294, "fanotify_init": 300, "memfd_create": 319,
    "memfd_secret": 447, "ioctl": 16,
    # the network
    "socket": 41, "socketpair": 53, "connect": 42, "accept": 43, "accept4": 288, "bind": 49,
    "listen": 50, "sendto": 44, "sendmsg": 46, "sendmmsg": 307, "recvfrom": 45, "recvmsg": 47,
    "recvmmsg": 299,
    # processes and signals
    "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "execve": 59, "execveat": 322,
    "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
    "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "setpgid": 109,
    "setsid": 112, "prctl": 157, "setpriority": 141, "ioprio_set": 251,
    # limits, privileges and the machine
    "setrlimit": 160, "prlimit64": 302, "unshare": 272, "setns": 308, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "keyctl": 250, "add_key": 248, "request_key": 249,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "reboot": 169, "personality": 135, "syslog": 103,
    "process_madvise": 440, "move_pages": 279, "migrate_pages": 256, "mbind": 237,
    "set_mempolicy": 238, "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114,
    "setresuid": 117, "setresgid": 119, "setgroups": 116, "capset": 126, "settimeofday": 164,
    "clock_settime": 227, "adjtimex": 159, "sethostname": 170, "setdomainname": 171,
    "iopl": 172, "ioperm": 173, "modify_ldt": 154, "lookup_dcookie": 212, "vhangup": 153,
}


class LockdownError(RuntimeError):
    """A layer of the sandbox could not be put in place."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg: int | ctypes.c_void_p = 0) -> None:
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise LockdownError(f"prctl({option}) failed: {os.strerror(err)}")


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent (the kernel) exits."""
    _prctl(_libc(), PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:    # the kernel died before the line above
        os._exit(0)


def quiet_stdio() -> None:
    """Point fds 0, 1 and 2 at /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def close_other_fds(keep: set[int]) -> int:
    """Close every fd but 0-2 and ``keep``; return the highest fd left open."""
    highest = max(keep | {2})
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    return highest


def set_limits(memory_mb: int, cpu_s: int, nofile: int) -> list[str]:
    """Apply the resource limits (soft and hard); return what was set."""
    limits = [
        ("RLIMIT_AS", resource.RLIMIT_AS, memory_mb * 1024 * 1024),
        ("RLIMIT_CPU", resource.RLIMIT_CPU, cpu_s),
        ("RLIMIT_FSIZE", resource.RLIMIT_FSIZE, 0),
        ("RLIMIT_NPROC", resource.RLIMIT_NPROC, 0),
        ("RLIMIT_CORE", resource.RLIMIT_CORE, 0),
        ("RLIMIT_MEMLOCK", resource.RLIMIT_MEMLOCK, 0),
        ("RLIMIT_MSGQUEUE", resource.RLIMIT_MSGQUEUE, 0),
        ("RLIMIT_NOFILE", resource.RLIMIT_NOFILE, nofile),
    ]
    done = []
    for name, which, value in limits:
        soft, hard = (value, value + 1) if which == resource.RLIMIT_CPU else (value, value)
        old_soft, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            hard = min(hard, old_hard)
            soft = min(soft, hard)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError) as exc:
            raise LockdownError(f"cannot set {name}: {exc}") from exc
        done.append(name)
    return done


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06


def seccomp_program(denied: list[int]) -> list[tuple[int, int, int, int]]:
    """The BPF program: kill on a foreign ABI, EPERM for ``denied``, allow the rest."""
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, 4),                       # A = seccomp_data.arch
        (_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, 0),                       # A = seccomp_data.nr
    ]
    n = len(denied)
    # the EPERM return sits after the n checks and the allow
    prog.append((_JGE_K, n + 1, 0, X32_SYSCALL_BIT))
    for i, nr in enumerate(denied):
        prog.append((_JEQ_K, n - i, 0, nr))
    prog.append((_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append((_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM))
    return prog


def install_seccomp() -> None:
    """Load the filter (needs PR_SET_NO_NEW_PRIVS, set here too)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise LockdownError(f"the seccomp filter is written for x86-64; this machine is "
                            f"{platform.machine()}")
    libc = _libc()
    _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
    program = seccomp_program(sorted(set(DENIED_X86_64.values())))
    filters = (_SockFilter * len(program))(*[_SockFilter(*ins) for ins in program])
    fprog = _SockFprog(len(program), filters)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise LockdownError(f"the kernel refused the seccomp filter: {os.strerror(err)}")


HINT = ("; set BATOS_SANDBOX_REQUIRE_SECCOMP=0 to run methods behind RestrictedPython and the "
        "resource limits only")


def lock_down(*, memory_mb: int, cpu_s: int, keep_fds: set[int], require_seccomp: bool) -> list[str]:
    """Everything above, in order; returns the layers in place.  Raises LockdownError
    when a required layer cannot be set."""
    layers = []
    quiet_stdio()
    highest = close_other_fds(keep_fds)
    layers += set_limits(memory_mb, cpu_s, highest + 1)
    _prctl(_libc(), PR_SET_DUMPABLE, 0)
    try:
        install_seccomp()
        layers.append("seccomp")
    except LockdownError as exc:
        if require_seccomp:
            raise LockdownError(f"{exc}{HINT}") from None
    return layers
