import Foundation
import KVMTestSupport
import Testing

/// Field names are the kernel's data (or a crafted tree's): whatever characters they hold,
/// CSV and JSON stay parseable, and duplicates never trap.
@Suite struct HostileNamesTests {
    static let names = ["plain", "with space", "with,comma", "with\"quote", "with\nnewline"]

    @Test func csvQuotesNamesAsRFC4180() throws {
        let tree = try FakeTree(fields: Self.names)
        let result = try run(kvmstatBinary, ["-d", "-1", "-i", "--format", "csv"], environment: tree.environment)
        #expect(result.status == 0, "\(result.stderr)")
        let header = "timestamp,plain,\"with\nnewline\",with space,\"with\"\"quote\",\"with,comma\""
        #expect(result.stdout.hasPrefix(header + "\n"), "\(result.stdout)")
        let row = result.stdout.dropFirst(header.count + 1).split(separator: "\n").first ?? ""
        #expect(row.split(separator: ",").count == Self.names.count + 1)
    }

    @Test func jsonLinesKeepsNamesIntact() throws {
        let tree = try FakeTree(fields: Self.names)
        let result = try run(kvmstatBinary, ["-d", "-1", "-i", "--format", "jsonl"], environment: tree.environment)
        #expect(result.status == 0, "\(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let events = try #require(object?["events"] as? [String: Any])
        #expect(Set(events.keys) == Set(Self.names))
        for name in Self.names {
            let event = events[name] as? [String: Any]
            #expect(event?["total"] as? Int == 7 && event?["parent"] == nil, "\(name)")
        }
    }
}
