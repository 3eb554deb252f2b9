#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMSources

/// How kvmstat ends: with an exit status, or dying of a signal as a program without a
/// handler would (status 128 + N for the shell, as upstream ends on SIGTERM and SIGHUP).
enum Ending: Sendable, Equatable {
    case status(Int32)
    case signal(Int32)

    static let success = Ending.status(0)

    /// How kvmstat ends on a signal its mode does not handle itself: Ctrl-C cleanly, others
    /// as upstream ends on them (by the signal).
    static func on(_ signal: Int32) -> Ending { signal == SIGINT ? .success : .signal(signal) }
}

/// Everything that ends kvmstat early, as a value: library code and modes throw it, and
/// `KVMStat.main` alone turns it into its message and exit status (`Failure.message`,
/// `Failure.ending`), so modes can run inside a test and be asked what they ended with.
enum Failure: Error, Equatable {
    /// argparse's usage error: the usage block, `PROG: error: MESSAGE`, status 2.
    case usage(String)
    /// A one-line error, `kvmstat: MESSAGE` (upstream's `sys.exit(message)` gives status 1;
    /// option combinations kvmstat refuses give 2).
    case message(String, status: Int32 = 1)
    /// One of upstream's own messages, word for word and without kvmstat's prefix (scripts
    /// grep for them, `Error: ` included), status 1.
    case upstream(String)
    /// Not an error: the mode ends here (a signal, a closed pipe, a listing printed).
    case end(Ending)

    init(_ error: SourceError) { self = .message(error.description) }

    /// What goes to standard error (nothing for an ordinary end), for program `name`.
    func message(program name: String) -> String? {
        switch self {
        case .usage(let text):
            return Options.usage(program: name, width: HelpText.terminalColumns() - 2) + "\n\(name): error: " + text + "\n"
        case .message(let text, _): return "kvmstat: " + text + "\n"
        case .upstream(let text): return text + "\n"
        case .end: return nil
        }
    }

    var ending: Ending {
        switch self {
        case .usage: return .status(2)
        case .message(_, let status): return .status(status)
        case .upstream: return .status(1)
        case .end(let ending): return ending
        }
    }
}

extension Failure {
    /// Runs `body`, turning a source's failure into kvmstat's one-line error.
    static func fromSource<T>(_ body: () throws(SourceError) -> T) throws(Failure) -> T {
        do { return try body() } catch { throw Failure(error) }
    }
}
