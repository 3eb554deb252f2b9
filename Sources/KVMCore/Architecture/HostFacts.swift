#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What architecture detection looks at, gathered once so tests can hand in fake hosts.
public struct HostFacts: Sendable, Equatable {
    /// `uname -m`, e.g. `x86_64`.
    public var machine: String
    /// The words of the first `flags` line of /proc/cpuinfo (empty when unreadable).
    public var cpuFlags: Set<String>
    /// `vendor_id` of /proc/cpuinfo, if any.
    public var cpuVendor: String?
    /// Names under /sys/module (loaded modules and built-ins with parameters).
    public var modules: Set<String>

    public init(machine: String, cpuFlags: Set<String> = [], cpuVendor: String? = nil,
                modules: Set<String> = []) {
        self.machine = machine
        self.cpuFlags = cpuFlags
        self.cpuVendor = cpuVendor
        self.modules = modules
    }

    /// Reads the facts from `paths`; `machine` overrides `uname -m`. Unreadable inputs give
    /// empty facts, never an error: detection then falls back to a plainer answer.
    public static func read(paths: SystemPaths = SystemPaths(), machine: String? = nil) -> HostFacts {
        let cpuinfo = (try? FileSystem.readText(paths.proc + "/cpuinfo")) ?? ""
        let parsed = parseCPUInfo(cpuinfo)
        let modules = (try? FileSystem.listDirectory(paths.sys + "/module"))?.map(\.name) ?? []
        return HostFacts(machine: machine ?? unameMachine(), cpuFlags: parsed.flags,
                         cpuVendor: parsed.vendor, modules: Set(modules))
    }

    /// Flags and vendor from /proc/cpuinfo text (`key<TAB>: value` lines).
    public static func parseCPUInfo(_ text: String) -> (flags: Set<String>, vendor: String?) {
        var flags: Set<String>?
        var vendor: String?
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingBlanks()
            let value = line[line.index(after: colon)...]
            if key == "flags" && flags == nil {
                flags = Set(value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init))
            } else if key == "vendor_id" && vendor == nil {
                vendor = value.trimmingBlanks()
            }
            if flags != nil && vendor != nil { break }
        }
        return (flags ?? [], vendor)
    }

    /// `uname -m` through uname(2).
    public static func unameMachine() -> String {
        var info = utsname()
        guard uname(&info) == 0 else { return "" }
        return withUnsafePointer(to: &info.machine) {
            $0.withMemoryRebound(to: CChar.self, capacity: 65) { String(cString: $0) }
        }
    }
}
