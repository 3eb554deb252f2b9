import KVMArchX86
import KVMCore
import KVMSources
import KVMTestSupport

/// A source configuration on the real kernel for this host's architecture.
func realConfiguration(pid: Int, filter: String? = nil, includePast: Bool = false) throws
    -> SourceConfiguration
{
    let paths = try #require(Kernel.paths, "debugfs is not mounted")
    let architecture = X86Family().detect(on: HostFacts.read()).architecture
    return SourceConfiguration(
        paths: paths, architecture: architecture, pid: pid,
        fieldFilter: try filter.map { try FieldFilter($0) }, includePast: includePast)
}

import Testing
