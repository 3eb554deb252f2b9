#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A C library loaded at run time (`dlopen`), for optional integrations: kvmstat builds and
/// runs without the library, and only the feature that needs it fails, with a clear line.
public final class SharedLibrary: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer
    public let path: String

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Loads `path` (a soname such as `libvirt.so.0`, or a file).
    public init(_ path: String) throws(Failure) {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw Failure(description: dlerror().map { String(cString: $0) } ?? "cannot load \(path)")
        }
        self.handle = handle
        self.path = path
    }

    /// The function `name` as the C function type `T` (a `@convention(c)` type), which the
    /// caller must give exactly as the library declares it.
    public func function<T>(_ name: String, as type: T.Type) throws(Failure) -> T {
        guard let symbol = dlsym(handle, name) else {
            throw Failure(description: "\(path) has no \(name)")
        }
        return unsafeBitCast(symbol, to: type)
    }
}
