import Foundation
import KVMCore
@testable import KVMStatApp
import KVMTestSupport
import Testing

/// The screen's vCPU view: shares of the interval by state, halt polling taken out of the
/// kernel's share (it is system time) rather than counted twice, and the view itself in tmux.
struct VCPUSharesTests {
    static func key(_ statistic: String, guest: Int, vcpu: Int, source: String) -> EventID {
        EventID("\(statistic)(vcpu\(vcpu))", parent: statistic, guest: guest, vcpu: vcpu, source: source)
    }

    @Test func sharesOfTheIntervalWithoutDoubleCounting() {
        var before = GuestValues()
        var after = GuestValues()
        let ns: [(String, String, UInt64)] = [
            ("vcpu_guest_ns", "vcpu", 100_000_000), ("vcpu_kernel_ns", "vcpu", 400_000_000),
            ("vcpu_vmm_ns", "vcpu", 50_000_000), ("vcpu_wait_ns", "vcpu", 150_000_000),
            ("halt_poll_success_ns", "qmp", 60_000_000), ("halt_poll_fail_ns", "qmp", 40_000_000),
            ("halt_wait_ns", "qmp", 200_000_000),
        ]
        for (statistic, source, delta) in ns {
            let key = Self.key(statistic, guest: 42, vcpu: 1, source: source)
            before[key] = 1_000
            after[key] = 1_000 + delta
        }
        let rows = VCPUShares.rows(current: after, previous: before, interval: 1)
        #expect(rows.count == 1 && rows[0].guest == 42 && rows[0].vcpu == 1)
        // guest 10, kernel 40 less 10 of polling, vmm 5, wait 15, poll 10, halted 20, other 10.
        let expected: [Double] = [10, 30, 5, 15, 10, 20, 10]
        for (share, want) in zip(rows[0].shares, expected) { #expect(abs(share - want) < 1e-9, "\(rows[0].shares)") }
        // A vCPU first seen now has no interval yet; a counter that went back is left out.
        #expect(VCPUShares.rows(current: after, previous: [:], interval: 1).isEmpty)
        let lines = VCPUShares.lines(rows, halts: true, guestName: { _ in "web1" }, height: 40)
        #expect(lines[0].hasPrefix("Guest / vCPU (% of wall time)") && lines[0].hasSuffix("halted  other"))
        #expect(lines[1].hasPrefix("web1 vcpu1 ") && lines[1].hasSuffix("10.0   30.0    5.0   15.0   10.0   20.0   10.0"), "\(lines[1])")
        #expect(lines.allSatisfy { $0.count <= 80 })
    }

    @Test(.enabled(if: Kernel.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"), realKernelNeeded))
    func vcpuViewOnTheScreen() throws {
        let name = "vview-\(getpid())"
        let workload = try startLoopingWorkload(name)
        defer { workload.terminate(); workload.waitUntilExit() }
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' --source vcpu -s 1")
        #expect(tmux.wait(for: "CurAvg/s") != nil, "\(tmux.screen())")
        tmux.send("v")
        let view = try #require(tmux.wait { lines in lines.contains { $0.hasPrefix(" \(name) vcpu1 ") } }, "\(tmux.screen())")
        #expect(view.contains { $0.hasPrefix(" Guest / vCPU (% of wall time)") && $0.hasSuffix("wait  other") })
        // Each row's shares make up the interval.
        let row = try #require(view.first { $0.hasPrefix(" \(name) vcpu0 ") })
        let shares = row.split(separator: " ").suffix(5).compactMap { Double($0) }
        #expect(shares.count == 5 && abs(shares.reduce(0, +) - 100) < 1.5, "\(row)")
        tmux.send("v")
        #expect(tmux.wait(for: "CurAvg/s") != nil)
        tmux.send("q")
        let plain = try TmuxSession(command: "'\(kvmstatBinary)' -s 1")
        #expect(plain.wait(for: "CurAvg/s") != nil)
        plain.send("v")
        #expect(plain.wait(for: "No vCPU times are read:") != nil, "\(plain.screen())")
    }
}
