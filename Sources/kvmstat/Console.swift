#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// Writing to the standard streams and leaving with upstream's exit statuses.
enum Console {
    static let standardOutput = FileDescriptor(rawValue: STDOUT_FILENO)
    static let standardError = FileDescriptor(rawValue: STDERR_FILENO)

    /// Writes to stdout; a closed pipe (`kvmstat ... | head`) ends the program quietly.
    static func out(_ text: String) {
        do { try standardOutput.writeAll(text) } catch {
            if error == .brokenPipe { exit(0) }
            fail("error writing to standard output: \(error)")
        }
    }

    static func err(_ text: String) {
        try? standardError.writeAll(text)
    }

    /// A one-line error, exit status 1 (upstream's `sys.exit(message)`).
    static func fail(_ message: String, status: Int32 = 1) -> Never {
        err("kvmstat: " + message + "\n")
        exit(status)
    }

    /// argparse's usage error: usage line, `kvmstat: error: MESSAGE`, exit status 2.
    static func usageError(_ message: String) -> Never {
        err(Options.usage + "\nkvmstat: error: " + message + "\n")
        exit(2)
    }
}
