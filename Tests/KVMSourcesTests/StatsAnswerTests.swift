import KVMCore
@testable import KVMSources
import Testing

/// The qmp source reads `query-stats` answers where they lie: QEMU's own layout quickly, any
/// other layout JSON allows the same, and what another user's monitor may send bounded.
struct StatsAnswerTests {
    static func read(_ text: String, numbering: StatisticNumbering = StatisticNumbering(),
                     expecting: StatsAnswer.Expectation = .init()) throws -> StatsAnswer {
        var answer = StatsAnswer(expecting: expecting)
        try Array(text.utf8).withUnsafeBufferPointer { (bytes) throws(JSONValue.ParseError) in
            var scanner = JSONScanner(bytes)
            try answer.read(&scanner, numbering: numbering)
            guard scanner.atEnd() else { throw scanner.error("trailing data") }
        }
        return answer
    }

    /// (name, block's path, value or buckets) of every value kept.
    static func values(_ answer: StatsAnswer, _ numbering: StatisticNumbering) -> [String] {
        answer.values.map { value in
            let name = value.statistic >= 0 ? numbering.names[Int(value.statistic)] : answer.newNames[Int(-1 - value.statistic)]
            let shown = value.bucketsEnd >= 0 ? "\(Array(answer.buckets[Int(value.number)..<Int(value.bucketsEnd)]))" : "\(value.number)"
            return "\(name)@\(answer.blocks[Int(value.block)] ?? "vm")=\(shown)"
        }
    }

    static let qemu = #"""
        [{"provider": "kvm", "stats": [{"name": "remote_tlb_flush", "value": 5}, {"name": "guest_mode", "value": true}]}, {"provider": "kvm", "qom-path": "/machine/unattached/device[0]", "stats": [{"name": "exits", "value": 18446744073709551615}, {"name": "halt_wait_hist", "value": [0, 12, 3]}, {"name": "halt_exits", "value": 0}]}]
        """#

    static let expected = ["remote_tlb_flush@vm=5", "guest_mode@vm=1", "exits@/machine/unattached/device[0]=18446744073709551615",
                           "halt_wait_hist@/machine/unattached/device[0]=[0, 12, 3]", "halt_exits@/machine/unattached/device[0]=0"]

    @Test func qemusLayoutAndAnyOtherReadAlike() throws {
        var numbering = StatisticNumbering()
        _ = numbering.numbering("exits")
        let quick = try Self.read(Self.qemu, numbering: numbering)
        #expect(Self.values(quick, numbering) == Self.expected)
        #expect(quick.newNames == ["remote_tlb_flush", "guest_mode", "halt_wait_hist", "halt_exits"])
        #expect(!quick.dropped)
        // Members in other orders, blanks, an escaped path, another provider's block, values
        // kvmstat does not count (negative, fractional, null, a histogram with a string).
        let other = #"""
            [ {"stats": [{"value": 5, "name": "remote_tlb_flush"}, {"name":"guest_mode","value":true}], "provider": "kvm"},
              {"provider": "other", "stats": [{"name": "exits", "value": 7}]},
              {"qom-path": "\/machine\/unattached\/device[0]", "provider": "kvm", "stats": [
                 {"name": "exits", "value": 18446744073709551615}, {"name": "odd1", "value": -1}, {"name": "odd2", "value": 1.5},
                 {"name": "odd3", "value": null}, {"name": "odd4", "value": [1, "x"]}, {"name": "odd5", "value": 18446744073709551616},
                 {"value": [0,12,3], "name": "halt_wait_hist"}, { "name" : "halt_exits" , "value" : 0 } ]} ]
            """#
        let slow = try Self.read(other, numbering: numbering)
        #expect(Self.values(slow, numbering) == Self.expected)
        #expect(!slow.dropped)
    }

    @Test func expectedNamesAreCheckedNotTrusted() throws {
        var numbering = StatisticNumbering()
        for name in ["remote_tlb_flush", "guest_mode", "exits", "halt_wait_hist", "halt_exits"] { _ = numbering.numbering(name) }
        let first = try Self.read(Self.qemu, numbering: numbering)
        let expectation = first.expectation(reusing: StatsAnswer.Expectation())
        #expect(expectation == StatsAnswer.Expectation(statistics: [0, 1, 2, 3, 4],
                                                       paths: [nil, "/machine/unattached/device[0]"], buckets: 3))
        // Expecting the wrong names and paths at each place: each is still read as it is.
        let wrong = StatsAnswer.Expectation(statistics: [4, 3, 2, 1, 0], paths: ["/machine/unattached/device[1]", "/x"],
                                            buckets: 1)
        let shuffled = try Self.read(Self.qemu, numbering: numbering, expecting: wrong)
        #expect(Self.values(shuffled, numbering) == Self.expected)
        #expect(shuffled.expectation(reusing: wrong) == expectation)
        // The right ones lead to the same reading, and to the same expectation again.
        let again = try Self.read(Self.qemu, numbering: numbering, expecting: expectation)
        #expect(Self.values(again, numbering) == Self.expected)
        #expect(again.expectation(reusing: expectation) == expectation)
        // A path escaped is decoded, whatever was expected at its place.
        let escaped = Self.qemu.replacingOccurrences(of: "device[0]", with: #"device[0]"#)
        let decoded = try Self.read(escaped, numbering: numbering, expecting: expectation)
        #expect(decoded.blocks == [nil, "/machine/unattached/device[0]"])
        let unescapedOther = try Self.read(Self.qemu.replacingOccurrences(of: "device[0]", with: "device[7]"),
                                           numbering: numbering, expecting: expectation)
        #expect(unescapedOther.blocks == [nil, "/machine/unattached/device[7]"])
    }

    @Test func whatAMonitorSendsIsBounded() throws {
        let long = String(repeating: "a", count: QMPSource.maxNameLength + 1)
        let answer = try Self.read(#"[{"provider": "kvm", "stats": [{"name": "\#(long)", "value": 1}, {"name": "a b", "value": 2}, {"name": "ex\u0069ts", "value": 3}, {"name": "ok", "value": [\#(Array(repeating: "1", count: HistogramBook.maxBuckets + 1).joined(separator: ", "))]}, {"name": "fine", "value": 4}]}]"#)
        #expect(Self.values(answer, StatisticNumbering()) == ["fine@vm=4"])
        #expect(answer.dropped)
        // New names beyond the table's room are dropped, not kept.
        var numbering = StatisticNumbering()
        for index in 0..<(StatisticNumbering.maxStatistics - 1) { _ = numbering.numbering("s\(index)") }
        let full = try Self.read(#"[{"provider": "kvm", "stats": [{"name": "new1", "value": 1}, {"name": "new2", "value": 2}, {"name": "s0", "value": 3}]}]"#,
                                 numbering: numbering)
        #expect(Self.values(full, numbering) == ["new1@vm=1", "s0@vm=3"])
        #expect(full.dropped)
    }

    /// Random damage to QEMU's layout: whatever the answer reader takes, the tree parser
    /// takes too, and the values kept are the tree's (the quick reader never reads otherwise).
    @Test func damagedAnswersReadAsTheTreeReadsThem() throws {
        let original = Array(Self.qemu.utf8)
        var seed: UInt64 = 0x2545_F491_4F6C_DD1D
        func next() -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: seed >> 33)
        }
        let alphabet = Array("{}[]\",: -0123456789.eE\\tfnu".utf8)
        var compared = 0
        for _ in 0..<4_000 {
            var text = original
            let at = next() % text.count
            switch next() % 3 {
            case 0: text[at] = alphabet[next() % alphabet.count]
            case 1: text.remove(at: at)
            default: text.insert(alphabet[next() % alphabet.count], at: at)
            }
            guard let answer = try? Self.read(String(decoding: text, as: UTF8.self)) else { continue }
            let tree = try #require(try? JSONValue.parse(bytes: text), "\(String(decoding: text, as: UTF8.self))")
            // What the tree holds, kept by the rules the reader has.
            var expected: [String] = []
            for block in tree.arrayValue ?? [] where block["provider"]?.stringValue == "kvm" {
                let path = block["qom-path"]?.stringValue ?? "vm"
                for stat in block["stats"]?.arrayValue ?? [] {
                    guard let name = stat["name"]?.stringValue, QMPSource.acceptable(name), let value = stat["value"] else { continue }
                    switch value {
                    case .bool(let flag): expected.append("\(name)@\(path)=\(flag ? 1 : 0)")
                    case .array(let items):
                        let counts = items.compactMap(\.uint64Value)
                        if counts.count == items.count { expected.append("\(name)@\(path)=\(counts)") }
                    default: if let number = value.uint64Value { expected.append("\(name)@\(path)=\(number)") }
                    }
                }
            }
            #expect(Self.values(answer, StatisticNumbering()) == expected, "\(String(decoding: text, as: UTF8.self))")
            compared += 1
        }
        #expect(compared > 500, "enough damaged answers were still answers")
    }

    @Test func malformedAnswersAreErrors() {
        for text in [#"[{"provider": "kvm", "stats": [{"name": "exits", "value": 1]}]"#, #"[{"provider": "kvm""#,
                     #"[{"provider": "kvm", "stats": [{"name": "exits", "value": 01}]}]"#, "{}", "[1]"] {
            #expect(throws: JSONValue.ParseError.self, "\(text)") { try Self.read(text) }
        }
    }
}
