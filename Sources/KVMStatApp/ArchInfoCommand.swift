#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// Runs `--arch-info [--arch NAME] [--format text|json]`.
enum ArchInfoCommand {
    static let formats = ["text", "json"]

    static func run(_ options: Options, plugins: Plugins) throws(Failure) -> Ending {
        let registry = plugins.architectures
        let detection: Detection
        if let name = options.arch {
            guard let arch = registry.architecture(named: name) else {
                throw .message(ArchitectureError.unknownName(name, known: registry.names).description, status: 2)
            }
            detection = Detection(architecture: arch, detectedBy: "--arch \(name)")
        } else {
            do {
                detection = try registry.detect(on: HostFacts.read())
            } catch {
                throw .message(error.description)
            }
        }
        let report = ArchInfoReport(detection: detection)
        switch options.format ?? "text" {
        case "text": try Console.out(report.text)
        case "json": try Console.out(report.json.rendered() + "\n")
        case let other:
            // The report is one document, not samples: the sample formats do not apply.
            throw .message("--arch-info prints a report, not samples: --format " + formats.joined(separator: " or ")
                + ", not '\(other)' (the sample formats " + plugins.formats.names.joined(separator: ", ")
                + " apply to -1, -l and -L)", status: 2)
        }
        return .success
    }
}
