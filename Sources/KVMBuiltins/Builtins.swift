import KVMArchARM64
import KVMArchLoongArch
import KVMArchPPC
import KVMArchRISCV
import KVMArchS390
import KVMArchX86
import KVMCore
import KVMFormats
import KVMSources
import KVMStatApp

/// The one place that names the built-in plugins, for the executable and the tests alike.
/// Adding an architecture, a source or a format is one line here.
public enum Builtins {
    public static let plugins = Plugins(
        architectures: ArchitectureRegistry([
            X86Family(),
            ARM64Architecture(),
            PPCArchitecture(),
            S390Architecture(),
            RISCVArchitecture(),
            LoongArchArchitecture(),
        ]),
        sources: SourceRegistry([
            TracepointSource.description,
            DebugfsSource.description,
            QMPSource.description,
            LibvirtSource.description,
            BPFSource.description,
            VCPUTimeSource.description,
        ]),
        formats: FormatRegistry([
            (TextFormat(), "kvm_stat's plain text (default)"),
            (CSVFormat(), "comma-separated values, kvm_stat's -c"),
            (JSONLinesFormat(), "one JSON object per sample"),
            (PrometheusFormat(), "Prometheus text exposition 0.0.4; with -L FILE each sample replaces the file"),
            (PrometheusFormat(openMetrics: true), "OpenMetrics 1.0 text; with -L FILE each sample replaces the file"),
        ])
    )
}
