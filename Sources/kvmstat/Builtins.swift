import KVMArchARM64
import KVMArchPPC
import KVMArchS390
import KVMArchX86
import KVMCore
import KVMFormats
import KVMSources

/// The one place that names the built-in plugins. Adding an architecture, a source or a
/// format is one line here.
enum Builtins {
    static let architectures: ArchitectureRegistry = {
        var registry = ArchitectureRegistry()
        registry.register(X86Family())
        registry.register(ARM64Architecture())
        registry.register(PPCArchitecture())
        registry.register(S390Architecture())
        return registry
    }()

    static let sources: SourceRegistry = {
        var registry = SourceRegistry()
        registry.register(name: "tracepoint", summary: "KVM tracepoints through perf (default)") {
            (configuration) throws(SourceError) in try TracepointSource(configuration: configuration)
        }
        registry.register(name: "debugfs", summary: "KVM's per-VM statistics files in debugfs") {
            (configuration) throws(SourceError) in try DebugfsSource(configuration: configuration)
        }
        return registry
    }()

    static let formats: FormatRegistry = {
        var registry = FormatRegistry()
        registry.register(TextFormat(), summary: "kvm_stat's plain text (default)")
        registry.register(CSVFormat(), summary: "comma-separated values, kvm_stat's -c")
        registry.register(JSONLinesFormat(), summary: "one JSON object per sample")
        return registry
    }()
}
