import Foundation
import Testing
import KVMCore

/// Whether the real-kernel tests can run here. Where /dev/kvm, debugfs or tracefs is missing
/// (a packager's build box) they are skipped with a message, unless KVMSTAT_REQUIRE_KVM=1
/// (CI), which makes them run and fail loudly instead.
public enum Kernel {
    public static var required: Bool {
        ProcessInfo.processInfo.environment["KVMSTAT_REQUIRE_KVM"] == "1"
    }

    public static var hasKVM: Bool {
        guard let fd = try? FileDescriptor.open("/dev/kvm", .readWrite) else { return false }
        fd.close()
        return true
    }

    /// The mounted debugfs/tracefs, if any.
    public static var paths: SystemPaths? { SystemPaths.mounted() }

    public static var hasDebugfsKVM: Bool {
        paths.map { FileSystem.isDirectory($0.debugfsKVM) } ?? false
    }

    public static var hasTracing: Bool {
        paths.map { FileSystem.isDirectory($0.kvmEvents) } ?? false
    }

    /// What is missing, for the skip message and the CI failure.
    public static var missing: [String] {
        var missing: [String] = []
        if !hasKVM { missing.append("/dev/kvm") }
        if !hasDebugfsKVM { missing.append("debugfs kvm/ (mount -t debugfs none /sys/kernel/debug)") }
        if !hasTracing { missing.append("tracefs events/kvm (mount -t tracefs none /sys/kernel/tracing)") }
        return missing
    }

    /// Real-kernel tests run when everything is here, or when CI requires them.
    public static var available: Bool { required || missing.isEmpty }

    /// Directory of the built products (kvmstat, kvmstat-workload) next to the test bundle.
    public static let productsDirectory: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return (exe as NSString).deletingLastPathComponent
    }()
}

/// The message a skipped real-kernel test shows.
public let realKernelNeeded: Comment =
    "needs real KVM: /dev/kvm, debugfs and tracefs (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"
