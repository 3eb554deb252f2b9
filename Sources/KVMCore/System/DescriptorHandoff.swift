#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Closing a perf event of a tracepoint makes the kernel unregister the probe and wait for an
/// RCU grace period — about 40 ms each here, seconds for a few hundred. Whoever drops the last
/// reference pays. kvmstat hands its descriptors to a short-lived child (`true`) that inherits
/// them: kvmstat's own close only drops a reference and returns at once, and the child pays
/// the cost in its exit, which nobody waits for.
public enum DescriptorHandoff {
    static let helpers = ["/bin/cat", "/usr/bin/cat"]

    /// Hands `descriptors` to a detached child and closes them here. Returns the child's pid
    /// (reap it with `reap` if kvmstat keeps running), or nil when they were closed here
    /// because no child could be started.
    @discardableResult
    public static func release(_ descriptors: [FileDescriptor]) -> pid_t? {
        guard !descriptors.isEmpty else { return nil }
        guard let helper = helpers.first(where: { access($0, X_OK) == 0 }) else {
            for fd in descriptors { fd.close() }
            return nil
        }
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            for fd in descriptors { fd.close() }
            return nil
        }
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        for fd in descriptors { _ = fcntl(fd.rawValue, F_SETFD, 0) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[0], 0)
        for target: Int32 in [1, 2] {
            posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_RDWR, 0)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with no signal blocked and SIGPIPE at its default, whatever
        // kvmstat's threads have.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &pipeSignal)
        // Its own process group: a Ctrl-C meant for kvmstat must not cut the hand-off short.
        posix_spawnattr_setflags(&attributes,
                                 Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(helper), nil]
        defer { for arg in argv { free(arg) } }
        let envp: [UnsafeMutablePointer<CChar>?] = [nil]
        let rc = argv.withUnsafeBufferPointer { args in
            envp.withUnsafeBufferPointer { env in
                posix_spawn(&pid, helper, &actions, &attributes, args.baseAddress!, env.baseAddress!)
            }
        }
        Glibc.close(pipeEnds[0])
        for fd in descriptors { fd.close() }
        Glibc.close(pipeEnds[1])
        return rc == 0 ? pid : nil
    }

    /// Hands off every descriptor but the standard ones: for an exit in any state, when the
    /// sources that own the perf events cannot be asked (a signal while they are being set up).
    @discardableResult
    public static func releaseAll() -> pid_t? {
        let open = (try? FileSystem.numericEntries("/proc/self/fd")) ?? []
        return release(open.filter { $0 > 2 }.map { FileDescriptor(rawValue: Int32($0)) })
    }

    /// Collects an exited hand-off child without blocking; true once it is gone.
    @discardableResult
    public static func reap(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) != 0
    }
}
