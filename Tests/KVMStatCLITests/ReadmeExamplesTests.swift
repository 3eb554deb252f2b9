import Foundation
import KVMTestSupport
import Testing

/// README's examples (`<!-- example: COMMAND -->` before a captured block) still run, and
/// their output still has the program's format: each captured line, with every run of
/// numbers made one placeholder, is a line of the real output made so. Numbers differ from
/// run to run; names, columns, order of fields and punctuation may not.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct ReadmeExamplesTests {
    struct Example {
        let command: String
        let lines: [String]
    }

    static func examples() throws -> [Example] {
        let readme = try DocsTests.file("README.md")
        var examples: [Example] = []
        var lines = readme.split(separator: "\n", omittingEmptySubsequences: false)[...]
        while let line = lines.popFirst() {
            guard line.hasPrefix("<!-- example: "), line.hasSuffix(" -->") else { continue }
            let command = String(line.dropFirst("<!-- example: ".count).dropLast(" -->".count))
            guard lines.popFirst()?.hasPrefix("```") == true else { continue }
            var block: [String] = []
            while let next = lines.popFirst(), !next.hasPrefix("```") { block.append(String(next)) }
            examples.append(Example(command: command, lines: block))
        }
        return examples
    }

    /// Every run of digits (and the blanks between them) as one `#`: `%10d` columns that
    /// run together stay one run whatever their width.
    static func shape(_ line: String) -> String {
        line.replacingOccurrences(of: #"(\s*[0-9]+)+"#, with: "#", options: .regularExpression)
    }

    @Test func everyExampleRunsAndKeepsItsFormat() throws {
        let examples = try Self.examples()
        #expect(examples.count >= 5, "README marks its examples with <!-- example: ... -->")
        let workload = try startLoopingWorkload("readme-\(getpid())")
        defer { workload.terminate(); workload.waitUntilExit() }
        usleep(300_000)
        let directory = URL(fileURLWithPath: kvmstatBinary).deletingLastPathComponent().path
        for example in examples {
            #expect(example.command.hasPrefix("kvmstat "), "\(example.command)")
            let logs = example.command.contains(" -l ")
            // Log examples run until stopped: ended with Ctrl-C's SIGINT after a few records.
            let script = "PATH='\(directory)':$PATH; " + (logs ? "timeout --preserve-status -s INT 3.5 " : "") + example.command
            let result = try run("/bin/sh", ["-c", script])
            #expect(result.status == 0, "\(example.command): \(result.stderr)")
            let produced = Set(result.stdout.split(separator: "\n").map { Self.shape(String($0)) })
            for line in example.lines where !line.isEmpty {
                #expect(produced.contains(Self.shape(line)), "\(example.command): README's line\n\(line)\nhas no like in\n\(result.stdout.prefix(1500))")
            }
        }
    }
}
