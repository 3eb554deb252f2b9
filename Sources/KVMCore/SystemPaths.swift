/// Where kvmstat finds the kernel's files. Every reader takes its paths from here, so tests can
/// point the whole program at a fake tree (`SystemPaths(root: tmpdir)`).
public struct SystemPaths: Sendable, Equatable {
    public var proc: String
    public var sys: String

    public init(root: String = "/") {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        proc = base + "/proc"
        sys = base + "/sys"
    }
}
