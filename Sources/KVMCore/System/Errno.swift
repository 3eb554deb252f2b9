#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call's error number, so callers match on `.permissionDenied` instead of
/// comparing raw integers after a `-1`.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    public static let notPermitted = Errno(rawValue: EPERM)
    public static let noSuchFile = Errno(rawValue: ENOENT)
    public static let noSuchProcess = Errno(rawValue: ESRCH)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    public static let brokenPipe = Errno(rawValue: EPIPE)
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    public static let isADirectory = Errno(rawValue: EISDIR)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let noSuchDevice = Errno(rawValue: ENODEV)
    public static let tooManyOpenFilesInSystem = Errno(rawValue: ENFILE)

    /// The C library's message, e.g. "Operation not permitted".
    public var description: String { String(cString: strerror(rawValue)) }
}
