import KVMCore
import Testing

/// The scanner reads peers' answers without building them: it must refuse what the tree
/// parser refuses (a hostile monitor gets the same "malformed JSON" either way), hand out the
/// same numbers, and never trap on any bytes.
struct JSONScannerTests {
    /// Checks a whole text as one value, as `QMPSession` checks a line.
    static func scans(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBufferPointer { bytes in
            var scanner = JSONScanner(bytes)
            do throws(JSONValue.ParseError) {
                try scanner.skipValue(depth: 0)
                return scanner.atEnd()
            } catch {
                return false
            }
        }
    }

    @Test func refusesWhatTheParserRefuses() {
        let bad = ["", " ", "{", "[", "[1,]", "{\"a\" 1}", "{\"a\": }", "{a: 1}", "\"abc", "\"a\\x\"", "\"a\\u12\"",
                   "\"tab\tinside\"", "[1 2]", "tru", "nul", "-", "1.", "1e", "01", "[1]]", "{} {}", "{\"a\": 1,}",
                   String(repeating: "[", count: 70) + String(repeating: "]", count: 70)]
        for text in bad {
            #expect(!Self.scans(text), "accepted \(text.debugDescription)")
            #expect((try? JSONValue.parse(text)) == nil || ["1.", "01"].contains(text), "parser accepts \(text.debugDescription)")
        }
        let good = ["{}", "[]", "0", "-0", "1e5", "-1.5E-3", "\"\\u00e9\\n\\\"\"", "{\"a\": [1, {\"b\": null}], \"c\": true}",
                    " [ 1 , 2 ] ", String(repeating: "[", count: 60) + String(repeating: "]", count: 60)]
        for text in good {
            #expect(Self.scans(text), "refused \(text.debugDescription)")
            #expect((try? JSONValue.parse(text)) != nil, "parser refuses \(text.debugDescription)")
        }
    }

    @Test func unsignedNumbersAtTheirLimits() {
        /// .none: not a number at all; .some(nil): a number that is no u64.
        func number(_ text: String) -> UInt64?? {
            Array(text.utf8).withUnsafeBufferPointer { bytes -> UInt64?? in
                var scanner = JSONScanner(bytes)
                do throws(JSONValue.ParseError) { return .some(try scanner.unsignedNumber()) } catch { return .none }
            }
        }
        #expect(number("0") == .some(0))
        #expect(number("18446744073709551615") == .some(UInt64.max))
        #expect(number("18446744073709551616") == .some(nil), "2^64 does not fit")
        #expect(number("99999999999999999999") == .some(nil))
        #expect(number("123456789012345678901") == .some(nil), "21 digits")
        #expect(number("-1") == .some(nil) && number("1.5") == .some(nil) && number("1e3") == .some(nil))
        #expect(number("-0") == .some(0), "-0 is 0, as the tree parser reads it")
        #expect(number("x") == .none && number("-") == .none && number("") == .none)
    }

    /// Random damage to a real answer: whatever the scanner accepts, the tree parser accepts,
    /// and the numbers read agree; nothing traps.
    @Test func damagedAnswersNeverFoolIt() {
        let answer = Array(#"{"return": [{"provider": "kvm", "qom-path": "/machine/unattached/device[0]", "stats": [{"name": "exits", "value": 18446744073709551615}, {"name": "guest_mode", "value": false}, {"name": "halt_wait_hist", "value": [0, 12, 3]}]}]}"#.utf8)
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: seed >> 33)
        }
        let alphabet = Array("{}[]\",: -0123456789.eE\\tfnu\t\n\u{01}a".utf8)
        for _ in 0..<3_000 {
            var text = answer
            for _ in 0..<(1 + next() % 3) {
                let at = next() % text.count
                switch next() % 3 {
                case 0: text[at] = alphabet[next() % alphabet.count]
                case 1: text.remove(at: at)
                default: text.insert(alphabet[next() % alphabet.count], at: at)
                }
            }
            let accepted = text.withUnsafeBufferPointer { bytes in
                var scanner = JSONScanner(bytes)
                return (try? scanner.skipValue(depth: 0)) != nil && scanner.atEnd()
            }
            if accepted {
                #expect((try? JSONValue.parse(bytes: text)) != nil, "\(String(decoding: text, as: UTF8.self))")
            }
        }
    }
}
