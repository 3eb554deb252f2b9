/// Where kvmstat finds the kernel's files. Every reader takes its paths from here, so tests can
/// point the whole program at a fake tree (`SystemPaths(root: tmpdir)`).
public struct SystemPaths: Sendable, Equatable {
    public var proc: String
    public var sys: String
    /// debugfs mount point (holds `kvm/`).
    public var debugfs: String
    /// tracefs mount point (holds `events/kvm/`); `<debugfs>/tracing` on older systems.
    public var tracing: String
    /// Whether debugfs was found mounted (`detect`); a fake tree counts as mounted.
    public var debugfsMounted = true
    /// The cgroup v2 hierarchy's mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
    /// hybrid hosts), nil where none is mounted.
    public var cgroup2: String?

    public init(root: String = "/") {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        proc = base + "/proc"
        sys = base + "/sys"
        debugfs = base + "/sys/kernel/debug"
        tracing = base + "/sys/kernel/tracing"
    }

    /// debugfs's `kvm` directory.
    public var debugfsKVM: String { debugfs + "/kvm" }

    /// The kvm tracepoint directory: tracefs's, else the one under debugfs.
    public var kvmEvents: String {
        let primary = tracing + "/events/kvm"
        if FileSystem.isDirectory(primary) { return primary }
        let legacy = debugfs + "/tracing/events/kvm"
        return FileSystem.isDirectory(legacy) ? legacy : primary
    }

    /// Finds the debugfs and tracefs mount points in /proc/mounts by filesystem type (the
    /// third field; the first, the device, is whatever the admin typed). Nil when debugfs is
    /// not mounted.
    public static func mounted(proc: String = "/proc") -> SystemPaths? {
        guard let mounts = try? FileSystem.readText(proc + "/mounts") else { return nil }
        var paths = SystemPaths()
        var debugfs: String?
        var tracefs: String?
        var cgroup2: String?
        for line in mounts.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count >= 3 else { continue }
            let point = unescapeMountPath(String(parts[1]))
            if parts[2] == "debugfs" && debugfs == nil { debugfs = point }
            if parts[2] == "tracefs" && tracefs == nil { tracefs = point }
            if parts[2] == "cgroup2" && cgroup2 == nil { cgroup2 = point }
        }
        paths.cgroup2 = cgroup2
        guard let debugfs else { return nil }
        paths.debugfs = debugfs
        paths.tracing = tracefs ?? debugfs + "/tracing"
        return paths
    }

    /// The host's paths whether or not debugfs is mounted (`debugfsMounted` says), with
    /// `KVMSTAT_DEBUGFS`-style overrides applied by the caller.
    public static func detect(proc: String = "/proc") -> SystemPaths {
        if let paths = mounted(proc: proc) { return paths }
        var paths = SystemPaths()
        paths.debugfsMounted = false
        paths.cgroup2 = cgroup2Mount(proc: proc)
        return paths
    }

    /// The cgroup v2 mount point alone (hosts without debugfs still have cgroups).
    static func cgroup2Mount(proc: String) -> String? {
        guard let mounts = try? FileSystem.readText(proc + "/mounts") else { return nil }
        for line in mounts.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count >= 3 && parts[2] == "cgroup2" { return unescapeMountPath(String(parts[1])) }
        }
        return nil
    }

    /// /proc/mounts writes space, tab, newline and backslash as octal escapes.
    static func unescapeMountPath(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
               let v = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
