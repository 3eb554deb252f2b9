import Foundation
import KVMCore
@testable import KVMSources
import KVMTestSupport
import Testing

/// What the qmp source asks a real QEMU, as QEMU answers it.
@Suite(.enabled(if: Kernel.required || (Kernel.available && QEMUGuest.available),
                "needs real KVM and qemu-system-x86 (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"))
struct QMPQuestionTests {
    /// Where nobody shows histograms (the screen, the text formats), a guest is asked for its
    /// other statistics by name, and QEMU answers those only: none of its histograms, which
    /// are most of its numbers.
    @Test func questionsWithoutHistogramsAreAnsweredWithoutThem() throws {
        let guest = try QEMUGuest(outs: 50, vcpus: 2)
        try guest.waitUntilHalted()
        let everything = try guest.command(#"{"execute": "query-stats", "arguments": {"target": "vcpu"}}"#)
        #expect(everything.contains("halt_wait_hist"), "QEMU has histograms to leave out")
        let questions = QMPSession.text(QMPSource.requests(schema: false, names: ["exits", "halt_exits", "halt_wait_ns"]))
            .split(separator: "\n").map(String.init)
        #expect(questions.count == 4 && questions[0].contains("qmp_capabilities") && questions[1].contains("query-cpus-fast"))
        for (question, target) in [(questions[2], "vm"), (questions[3], "vcpu")] {
            #expect(question.contains(#""target": "\#(target)""#), "\(question)")
            let answer = try guest.command(question)
            let returned = try #require(try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any])
            let blocks = try #require(returned["return"] as? [[String: Any]], "\(answer)")
            let names = Set(blocks.flatMap { ($0["stats"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String } })
            if target == "vcpu" {
                #expect(blocks.count == 2 && names == ["exits", "halt_exits", "halt_wait_ns"], "\(answer)")
            } else {
                #expect(names.isSubset(of: ["exits", "halt_exits", "halt_wait_ns"]), "\(answer)")
            }
            #expect(!answer.contains("_hist"))
        }
    }
}
