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

    private static func runCleanup() {
        guard let cleanup else { return }
        Console.cleanup = nil
        cleanup()
    }
}
