#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// Writing to the standard streams and leaving with upstream's exit statuses. Every exit goes
/// through `leave`, which first releases the sources (handing perf descriptors off so the
/// kernel's slow teardown does not hold the shell).
enum Console {
    static let standardOutput = FileDescriptor(rawValue: STDOUT_FILENO)
    static let standardError = FileDescriptor(rawValue: STDERR_FILENO)

    /// Run before any exit; set once the sources are open.
    nonisolated(unsafe) static var cleanup: (() -> Void)?
    /// Puts the terminal back; set while the interactive screen owns it.
    nonisolated(unsafe) static var restoreTerminal: (() -> Void)?
    /// Puts the terminal's modes back without ncurses (which may be blocked on a stalled
    /// terminal in the main thread), for the watcher's emergency end.
    nonisolated(unsafe) static var emergencyTerminalRestore: (@Sendable () -> Void)?

    /// Makes descriptors 0, 1 and 2 safe before anything is opened: a service manager may
    /// start kvmstat with one closed (`2>&-`), and the log file or a perf event would then
    /// become "standard error" and receive warnings.
    static func secureStandardDescriptors() {
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 {
            let null = open("/dev/null", O_RDWR)
            if null >= 0 && null != fd {
                dup2(null, fd)
                close(null)
            }
        }
    }

    /// Ends kvmstat from the signal watcher when the main thread did not take `signal` in
    /// time (it is blocked in a regex, a full pipe, a slow set-up) or did not end after taking
    /// it (`force`): every descriptor is handed off, the terminal's modes restored, and the
    /// status is the one the main thread would have given. Returns when the main thread has
    /// claimed the ending first (it is ending now).
    @Sendable static func endStuck(by signal: Int32, force: Bool) {
        guard Signals.claimEnding() || force else { return }
        TemporaryFile.remove()
        DescriptorHandoff.releaseAll()
        emergencyTerminalRestore?()
        if signal == SIGINT { _exit(0) }
        Signals.die(by: signal)
    }

    /// Writes to stdout; a closed pipe (`kvmstat -l | head`) ends the program quietly.
    static func out(_ text: String) {
        do { try standardOutput.writeAll(text) } catch {
            if error == .brokenPipe { leave(0) }
            fail("error writing to standard output: \(error)")
        }
    }

    static func err(_ text: String) {
        try? standardError.writeAll(text)
    }

    static func warn(_ message: String) {
        err("kvmstat: warning: " + message + "\n")
    }

    /// A one-line error, exit status 1 (upstream's `sys.exit(message)`).
    static func fail(_ message: String, status: Int32 = 1) -> Never {
        err("kvmstat: " + message + "\n")
        leave(status)
    }

    /// One of upstream's own messages, word for word and without kvmstat's prefix (scripts
    /// grep for them, `Error: ` included), exit status 1.
    static func failAsUpstream(_ message: String) -> Never {
        err(message + "\n")
        leave(1)
    }

    /// argparse's usage error: usage line, `kvmstat: error: MESSAGE`, exit status 2.
    static func usageError(_ message: String) -> Never {
        err(Options.usage + "\nkvmstat: error: " + message + "\n")
        leave(2)
    }

    /// Releases the sources, then dies of `signal` as a program without a handler would
    /// (status 128 + N for the shell, as upstream ends on SIGTERM and SIGHUP).
    static func leave(bySignal signal: Int32) -> Never {
        runCleanup()
        Signals.die(by: signal)
    }

    static func leave(_ status: Int32) -> Never {
        runCleanup()
        exit(status)
    }

    /// Claims the ending (the watcher may be ending kvmstat already: then wait for it), and
    /// releases what kvmstat holds.
    private static func runCleanup() {
        if !Signals.claimEnding() { Signals.waitForTheEnd() }
        TemporaryFile.remove()
        if let restore = restoreTerminal {
            restoreTerminal = nil
            restore()
        }
        guard let cleanup else { return }
        Console.cleanup = nil
        cleanup()
    }
}
