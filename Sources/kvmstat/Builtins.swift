import KVMArchARM64
import KVMArchPPC
import KVMArchS390
import KVMArchX86
import KVMCore

/// The one place that names the built-in plugins. Adding an architecture is one line here.
enum Builtins {
    static let architectures: ArchitectureRegistry = {
        var registry = ArchitectureRegistry()
        registry.register(X86Family())
        registry.register(ARM64Architecture())
        registry.register(PPCArchitecture())
        registry.register(S390Architecture())
        return registry
    }()
}
