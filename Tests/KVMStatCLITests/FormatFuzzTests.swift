import Foundation
import KVMBuiltins
import KVMCore
import KVMFormats
import KVMTestSupport
import Testing

/// Names are other users' data (a QEMU's `-name`, a monitor's statistic names): every format
/// must still produce output its readers parse, with the name recognisable.
struct FormatFuzzTests {
    /// Every control character, CR LF pairs, what invalid UTF-8 decodes to, bidi marks,
    /// quotes, separators and a very long name.
    static let hostileNames: [String] = {
        var names = (Array(0x00...0x1F) + [0x7F] + Array(0x80...0x9F)).map { "a" + String(UnicodeScalar($0)!) + "b" }
        names += ["x\r\nkvm_fake_total 1\r\n# ", String(decoding: [0x78, 0xFF, 0xFE, 0x79], as: UTF8.self),
                  "\u{202E}evil", "\u{2066}x\u{2069}", "a,\"b\"\\c", "line\u{2028}sep", String(repeating: "é", count: 30_000)]
        return names
    }()

    static func sample(statistics names: [String], guests: [String]) -> Sample {
        var values: [EventID: EventStat] = [:]
        var families: [String: MetricFamily] = [:]
        for name in names {
            values[EventID(name, source: "qmp")] = EventStat(value: 7, delta: 3)
            families[name] = MetricFamily(name, kind: .counter, help: "statistic \(name)", origin: .kvmStatistic)
        }
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: values,
                            families: ["qmp": families])
        for (index, guest) in guests.enumerated() {
            sample.guestNames[1000 + index] = guest
            sample.guestValues[EventID("exits", guest: 1000 + index, source: "qmp")] = UInt64(index)
        }
        sample.families["qmp", default: [:]]["exits"] = MetricFamily("exits", kind: .counter, help: "exits",
                                                                      origin: .kvmStatistic)
        return sample
    }

    /// RFC 4180 fields of one record (quoted fields may hold commas, quotes and line breaks).
    static func csvRecords(_ text: String) -> [[String]] {
        var records: [[String]] = []
        var record: [String] = []
        var field = ""
        var quoted = false
        var scalars = Array(text.unicodeScalars)[...]
        while let c = scalars.popFirst() {
            if quoted {
                if c == "\"" {
                    if scalars.first == "\"" { field.unicodeScalars.append(scalars.removeFirst()) } else { quoted = false }
                } else {
                    field.unicodeScalars.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                record.append(field)
                field = ""
            } else if c == "\n" {
                record.append(field)
                records.append(record)
                record = []
                field = ""
            } else {
                field.unicodeScalars.append(c)
            }
        }
        return records
    }

    @Test func csvJSONAndTextStayParseable() throws {
        let sample = Self.sample(statistics: Self.hostileNames, guests: [])
        let keys = sample.sortedKeys
        // CSV: one header and one row of as many fields, the names as they are.
        let csv = Self.csvRecords(CSVFormat().batch(sample))
        #expect(csv.count == 2 && csv[0].count == keys.count + 1 && csv[1].count == keys.count + 1)
        #expect(Array(csv[0].dropFirst()) == keys.map(sample.name(of:)))
        // JSON lines: one line, valid JSON, every name a key as it is.
        let json = JSONLinesFormat().batch(sample)
        #expect(json.split(separator: "\n", omittingEmptySubsequences: false).count == 2)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let events = try #require(object["events"] as? [String: Any])
        #expect(Set(events.keys) == Set(Self.hostileNames))
        // Text: a line per name, each shown escaped (no line broken, no escape sequence).
        let text = TextFormat().batch(sample)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == keys.count)
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || $0.value == 0x7F || $0 == "\u{202E}" })
        #expect(text.contains(#"x\x0d\x0akvm_fake_total 1\x0d\x0a# "#) && text.contains(#"\u202eevil"#))
        let banner = try #require(TextFormat().banner(keys: keys, of: sample))
        #expect(!banner.contains("\n") && !banner.contains("\r"))
    }

    @Test(.enabled(if: PrometheusBinaries.installed, "needs Debian's prometheus (promtool)"))
    func prometheusStaysValidWithHostileGuestNames() throws {
        let sample = Self.sample(statistics: ["exits"], guests: Self.hostileNames)
        for format in [PrometheusFormat(), PrometheusFormat(openMetrics: true)] {
            let text = format.batch(sample)
            let file = NSTemporaryDirectory() + "kvmstat-fuzz-\(UUID().uuidString).prom"
            defer { try? FileManager.default.removeItem(atPath: file) }
            try text.write(toFile: file, atomically: false, encoding: .utf8)
            if !format.openMetrics {
                // (promtool reads the text format; OpenMetrics's family names differ from it.)
                let checked = try run("/bin/bash", ["-c", "\(PrometheusBinaries.promtool) check metrics < '\(file)'"])
                #expect(checked.status == 0, "\(format.name): \(checked.stdout.prefix(400))\(checked.stderr.prefix(400))")
            } else {
                #expect(text.hasSuffix("# EOF\n") && text.components(separatedBy: "# EOF").count == 2)
            }
            // A series per guest: no name broke out of its label.
            let series = text.split(separator: "\n").filter { $0.hasPrefix("kvm_guest_exits_total{") }
            #expect(series.count == Self.hostileNames.count, "\(format.name)")
            #expect(!text.split(separator: "\n").contains { $0.hasPrefix("kvm_fake_total") })
        }
    }
}
