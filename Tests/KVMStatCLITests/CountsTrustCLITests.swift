import Foundation
import KVMTestSupport
import Testing

/// Issue 9's cases end to end, through the built binary.
@Suite struct CountsTrustCLITests {
    @Test(.enabled(if: Kernel.available, realKernelNeeded))
    func debugfsWithNoVMYetHasColumnsFromTheStart() throws {
        let workload = try WorkloadProcess(vms: 0, vcpus: 1, iterations: 10)
        let batch = try kvmstat("-d", "-1", "-p", "\(workload.pid)")
        #expect(batch.status == 0, "\(batch.stderr)")
        #expect(batch.stdout.contains("pages_4k "), "\(batch.stdout)")
        let log = try BackgroundKvmstat(["-d", "-l", "-s", "0.1", "-p", "\(workload.pid)"])
        usleep(400_000)
        try workload.addVMs(1)
        usleep(300_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        let columns = lines.first?.split(separator: " ") ?? []
        #expect(columns.contains("pages_4k"), "\(lines.first ?? "")")
        // Every record has a value per column.
        for record in lines.dropFirst() { #expect(record.split(separator: " ").count == columns.count + 2) }
    }

    @Test func hugeDebugfsValuesPrintAsTheKernelsU64() throws {
        let tree = NSTemporaryDirectory() + "kvmstat-huge-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let kvm = tree + "/kvm"
        try FileManager.default.createDirectory(atPath: kvm + "/100-5", withIntermediateDirectories: true)
        for field in ["exits", "halt_exits"] {
            try "0\n".write(toFile: "\(kvm)/\(field)", atomically: false, encoding: .utf8)
        }
        try "18446744073709551615\n".write(toFile: kvm + "/100-5/exits", atomically: false, encoding: .utf8)
        try "200376420520689663123\n".write(toFile: kvm + "/100-5/halt_exits", atomically: false, encoding: .utf8)
        let result = try run(kvmstatBinary, ["-d", "-i", "-1"], environment: ["KVMSTAT_DEBUGFS": tree])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("exits" + String(repeating: " ", count: 37)
            + "18446744073709551615         0\n"), "\(result.stdout)")
        #expect(result.stderr.contains("halt_exits of VM 100-5 holds no number below 2^64"))
    }

    @Test(.enabled(if: Kernel.available, realKernelNeeded))
    func pidWatchSurvivesThreadChurnWithFlatDescriptors() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 100, extra: ["--churn", "20:12"])
        let kvmstat = try BackgroundKvmstat(["-l", "-s", "0.1", "-p", "\(workload.pid)"])
        kvmstat.waitUntilCounting()
        var counts: [Int] = []
        for _ in 0..<15 {
            usleep(200_000)
            counts.append(kvmstat.perfDescriptors())
        }
        kvmstat.signal(SIGINT)
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let low = counts.min() ?? 0
        let high = counts.max() ?? 0
        // At most a few short-lived threads' groups at a time, never a pile.
        #expect(high <= 4 * low, "perf descriptors over 3 s: \(counts)")
    }
}
