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
    static func out(_ text: String) throws(Failure) {
        do { try standardOutput.writeAll(text) } catch {
            if error == .brokenPipe { throw .end(.success) }
            throw .message("error writing to standard output: \(error)")
        }
    }

    static func err(_ text: String) {
        try? standardError.writeAll(text)
    }

    static func warn(_ message: String) {
        err("kvmstat: warning: " + message + "\n")
    }

    /// Says what `failure` says (once, on stderr) and returns how kvmstat ends.
    static func report(_ failure: Failure, program: String) -> Ending {
        if let message = failure.message(program: program) { err(message) }
        return failure.ending
    }

    /// kvmstat's one way out: releases the sources (handing perf descriptors off so the
    /// kernel's slow teardown does not hold the shell) and the terminal, then exits with the
    /// status or dies of the signal. (The signal watcher's emergency end, `endStuck`, is the
    /// other: it runs when the main thread cannot.)
    static func leave(_ ending: Ending) -> Never {
        runCleanup()
        switch ending {
        case .status(let status): exit(status)
        case .signal(let signal): Signals.die(by: signal)
        }
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
