import Foundation
import KVMBuiltins
@testable import KVMStatApp
import Testing

/// The option table (`Options.specs`) and the registries are the one source of what kvmstat
/// takes: `--help`, the usage block and the completions are made from them, and the man page
/// and README, written by hand, must agree with them.
struct DocsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static func file(_ path: String) throws -> String { try String(contentsOfFile: root + "/" + path, encoding: .utf8) }

    /// The text of man page section `name` (from `.SH NAME` to the next `.SH`).
    static func manSection(_ name: String) throws -> String {
        let page = try file("kvmstat.1")
        guard let start = page.range(of: ".SH \(name)\n") else { return "" }
        let rest = page[start.upperBound...]
        return String(rest[..<(rest.range(of: "\n.SH ")?.lowerBound ?? rest.endIndex)])
    }

    static func troff(_ option: String) -> String { option.replacingOccurrences(of: "-", with: "\\-") }

    /// The README's section `title` (to the next heading of the same level).
    static func readmeSection(_ title: String) throws -> String {
        let readme = try file("README.md")
        guard let start = readme.range(of: "\n## \(title)\n") else { return "" }
        let rest = readme[start.upperBound...]
        return String(rest[..<(rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex)])
    }

    /// The version the binary reports (`kvmstat_build_info`) is the one the package is named after.
    @Test func versionIsTheVersionFiles() throws {
        #expect(KVMStatVersion.version == (try Self.file("VERSION")).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test func manPageHasEveryOption() throws {
        let synopsis = try Self.manSection("SYNOPSIS")
        let options = try Self.manSection("OPTIONS")
        for spec in Options.specs {
            #expect(synopsis.contains(Self.troff(spec.optionStrings[0])), "SYNOPSIS lacks \(spec.optionStrings[0])")
            for spelling in spec.optionStrings where spelling != "-h" {
                #expect(options.contains(Self.troff(spelling)), "OPTIONS lacks \(spelling)")
            }
        }
    }

    @Test func manPageAndReadmeNameEveryFormatAndSource() throws {
        let formats = try Self.manSection("FORMATS")
        let using = try Self.readmeSection("Using it")
        for name in Builtins.plugins.formats.names {
            #expect(formats.contains(".B \(name)\n"), "man FORMATS lacks \(name)")
            #expect(using.contains("`\(name)`"), "README lacks format \(name)")
        }
        let options = try Self.manSection("OPTIONS")
        for name in Builtins.plugins.sources.names {
            #expect(options.contains("\\fB\(name)\\fR"), "man --source lacks \(name)")
            #expect(using.contains("`\(name)`"), "README lacks source \(name)")
        }
    }

    @Test func readmeNamesEveryOption() throws {
        let using = try Self.readmeSection("Using it")
        for spec in Options.specs {
            let shown = spec.optionStrings.contains { using.contains("`\($0)") || using.contains("/\($0)`") }
            #expect(shown, "README's option list lacks \(spec.displayName)")
        }
    }

    @Test func helpAndUsageComeFromTheTable() {
        let help = HelpText.render(plugins: Builtins.plugins)
        for spec in Options.specs {
            #expect(Options.usage().contains("[" + spec.optionStrings[0]), "usage lacks \(spec.displayName)")
            for spelling in spec.optionStrings { #expect(help.contains(spelling), "--help lacks \(spelling)") }
        }
        // The screen's `b` line names the sources that can show guests, as the `h` screen does.
        let guests = Builtins.plugins.sources.entries.filter(\.byGuest).map(\.name).joined(separator: ", ")
        #expect(help.contains("   b     toggle events by guests (\(guests); honors filters)"))
        // Every usage line fits argparse's 78 columns.
        for line in Options.usage().split(separator: "\n") { #expect(line.count <= 78, "\(line)") }
    }

    @Test func readmeLayoutListsEveryModuleAndLinksOnlyTheRepository() throws {
        let layout = try Self.readmeSection("Layout")
        let modules = try FileManager.default.contentsOfDirectory(atPath: Self.root + "/Sources")
        for module in modules { #expect(layout.contains("`\(module)`"), "Layout lacks \(module)") }
        let readme = try Self.file("README.md")
        #expect(!readme.contains("../"), "README points outside the repository")
        // Every relative link and `path` it names as a file of the repository exists.
        for match in readme.matches(of: /\]\(([^)#:]+)\)/) {
            let path = String(match.1)
            #expect(FileManager.default.fileExists(atPath: Self.root + "/" + path), "README links \(path)")
        }
    }
}
