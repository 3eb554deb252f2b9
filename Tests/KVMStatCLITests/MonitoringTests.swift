import Foundation
import KVMTestSupport
import Testing

/// The shipped dashboard and rules (monitoring/): promtool checks and unit-tests the rules,
/// the dashboard's structure is checked, and every panel's query, its variables substituted,
/// returns series from a real Prometheus scraping a real kvmstat with real guests (a QEMU
/// with a QMP monitor, the workload's busy vCPUs): no empty panel.
@Suite(.serialized,
       .enabled(if: Kernel.required || (Kernel.available && PrometheusBinaries.installed && QEMUGuest.available),
                "needs real KVM, QEMU and Debian's prometheus"))
struct MonitoringTests {
    static let check = DocsTests.root + "/monitoring/check"

    @Test func rulesAndDashboardCheckOut() throws {
        let result = try run(Self.check, [])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("promtool test rules"), "\(result.stdout)")
    }

    @Test func everyPanelHasSeries() throws {
        let qemu = try QEMUGuest(outs: 2_000, vcpus: 2, name: "mon-qemu-\(getpid())")
        defer { qemu.stop() }
        let workload = try startLoopingWorkload("mon-wl-\(getpid())")
        defer { workload.terminate(); workload.waitUntilExit() }
        try qemu.waitUntilHalted()
        let port = try HTTPClient.freePort()
        let kvmstat = try BackgroundKvmstat(["--listen", "127.0.0.1:\(port)", "-s", "1", "--source", "bpf,qmp,vcpu",
                                             "--latency"])
        defer {
            kvmstat.signal(SIGINT)
            _ = kvmstat.finish()
        }
        let prometheus = try PrometheusBinaries.scraping(port: port, ruleFiles: [DocsTests.root + "/monitoring/kvmstat-rules.yml"])
        defer {
            prometheus.stop()
            try? FileManager.default.removeItem(atPath: prometheus.directory)
        }
        // Rates need a few scrapes; then every panel, retried while series arrive.
        var result: RunResult?
        let deadline = Date().addingTimeInterval(60)
        repeat {
            sleep(5)
            result = try run(Self.check, ["--prometheus", "http://127.0.0.1:\(prometheus.port)"])
        } while result?.status != 0 && Date() < deadline
        #expect(result?.status == 0, "\(result?.stdout ?? "")\(result?.stderr ?? "")")
    }
}
