import Foundation
import KVMCore
import Testing

/// `-f` filters mean what they mean to Python's `re.match`: each pattern is run against the
/// same names in Python itself (python3 from the system), and the answers must agree.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
                "compares with Python's re: needs /usr/bin/python3"))
struct PythonRegexTests {
    static let patterns = [
        "kvm_exit", "kvm_(exit|pio)", "(?i)KVM_PIO", "(?a)kvm_\\w+", "(?u)kvm", "[[:alpha:]]",
        "[[:alpha:]]+", "kvm_[a-z]+_exit", "kvm_exit\\(HLT\\)", "kvm_exit\\Z", "kvm_exi.$",
        "(?P<n>kvm)_(?P=n)", "(?#comment)kvm", "kvm_{", "a{,2}", "k{1,}vm", "[&&a]", "[~-]",
        "[a-c-e]", "\\x6bvm", "\\u006bvm", "\\153vm", "(?s:kvm).", "(?i:K)vm", "[^_]+_", "x*",
        "(kvm|halt)_.*ns$", "\\d", "[\\d_]+", "exits?", "(?x) kvm _ pio", "[]a]", "[^]a]+",
        "kvm_{1}", "kvm_}", "\\.", "a|", "(?ai)x", "[\\b]", "\\bkvm", "k(?=vm)", "k(?!x)",
        "(?>kvm)_", "exit$", "(?m)exit$", "kv+m", "kvm_exit\\s*", "\\Akvm",
        // Python refuses these; kvmstat must too.
        "kvm_(", "\\p{L}", "(?L)kvm", "\\z", "[b-a]", "(?au)k", "\\h", "*kvm", "\\Qk\\E", "(?<n>k)",
    ]
    static let names = [
        "kvm_exit", "kvm_pio", "kvm_exit(HLT)", "kvm_kvm", "halt_poll_ns", "exits", "a", "[:alpha:]",
        "]", "kvm_{", "kvm_}", "kvm_userspace_exit", "123", "k", "KVM_PIO", "x", "&", "~", "-", "d",
        "kvm_pio_exit", "kvm_exit\n", "b", "kvm.", "e", "c", "\u{8}",
    ]

    /// Python's answers: per pattern, nil when re.compile refuses it, else a match per name.
    static func python() throws -> [[Bool]?] {
        let script = """
        import json, re, sys, warnings
        # `[[:alpha:]]` is compared on purpose; Python's FutureWarning about it is no news.
        warnings.simplefilter("ignore", FutureWarning)
        data = json.load(sys.stdin)
        out = []
        for p in data["patterns"]:
            try:
                r = re.compile(p)
            except re.error:
                out.append(None)
                continue
            out.append([r.match(n) is not None for n in data["names"]])
        print(json.dumps(out))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let request = try JSONSerialization.data(withJSONObject: ["patterns": patterns, "names": names])
        input.fileHandleForWriting.write(request)
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let decoded = try #require(try JSONSerialization.jsonObject(with: data) as? [Any])
        return decoded.map { $0 as? [Bool] }
    }

    @Test func matchesAsPythonMatches() throws {
        let expected = try Self.python()
        for (pattern, answers) in zip(Self.patterns, expected) {
            let filter = try? FieldFilter(pattern)
            guard let answers else {
                #expect(filter == nil, "Python refuses \(pattern)")
                continue
            }
            guard let filter else {
                Issue.record("kvmstat refuses \(pattern), which Python takes")
                continue
            }
            for (name, wanted) in zip(Self.names, answers) {
                #expect(filter.matches(name) == wanted, "\(pattern) on \(name.debugDescription)")
            }
        }
    }

    /// Valid Python that Swift's Regex cannot express: refused, and said why.
    @Test(arguments: [("(k)?(?(1)vm|x)", "conditional groups"), ("(?<=k)vm", "lookbehind"),
                      (".*(?<!exit)$", "lookbehind")])
    func unsupportedConstructsAreSaidSo(pattern: String, what: String) {
        do {
            _ = try FieldFilter(pattern)
            Issue.record("\(pattern) was taken")
        } catch {
            #expect(error.description.contains(what) && error.description.contains("does not support"))
        }
    }
}
