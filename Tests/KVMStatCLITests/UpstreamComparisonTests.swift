import Foundation
import KVMTestSupport
import Testing

/// Upstream kvm_stat run beside kvmstat on the same host: its messages and its screen's
/// layout are the reference, byte for byte. The script is the project's seed
/// (`../shared/seed/kvm_stat.py`) where it is beside the clone, else the one in Debian's
/// `linux-source-*` package (`tools/kvm/kvm_stat/kvm_stat`, which `.ci/run` installs),
/// extracted once into the temporary directory: a fresh clone alone runs these tests too.
/// Upstream stops at start on a host whose /proc/cpuinfo names neither vmx nor svm (as this
/// one), so it runs in a mount namespace of its own with a cpuinfo that names svm
/// bind-mounted over it.
enum Upstream {
    static let seed: String = {
        let beside = URL(fileURLWithPath: packageRoot + "/../shared/seed/kvm_stat.py").standardized.path
        if FileManager.default.fileExists(atPath: beside) { return beside }
        let extracted = NSTemporaryDirectory() + "kvmstat-upstream-kvm_stat"
        if FileManager.default.fileExists(atPath: extracted) { return extracted }
        let sources = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/src")) ?? [])
            .filter { $0.hasPrefix("linux-source-") && $0.hasSuffix(".tar.xz") }.sorted()
        guard let tarball = sources.last else { return beside }
        let partial = extracted + ".\(getpid())"
        let result = try? KVMStatCLITests.run("/bin/sh", ["-c", "tar -xJf '/usr/src/\(tarball)' --wildcards "
            + "'*/tools/kvm/kvm_stat/kvm_stat' -O > '\(partial)'"])
        guard result?.status == 0, (try? FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int) ?? 0 > 0,
              rename(partial, extracted) == 0
        else {
            unlink(partial)
            return beside
        }
        return extracted
    }()
    static let python = "/usr/bin/python3"

    static var available: Bool {
        getuid() == 0 && FileManager.default.fileExists(atPath: seed)
            && FileManager.default.isExecutableFile(atPath: python)
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")
            && Kernel.available
    }

    /// /proc/cpuinfo with `svm` added to every flags line (one file, rewritten atomically by
    /// each run, so runs leave nothing behind).
    static let cpuinfo: String = {
        let path = NSTemporaryDirectory() + "kvmstat-cpuinfo-svm"
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let patched = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasPrefix("flags") ? line.replacingOccurrences(of: ": ", with: ": svm ") : String(line)
        }.joined(separator: "\n")
        try? patched.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    static func quoted(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// A shell command that runs upstream (`script`, the seed unless another copy) with
    /// `arguments`.
    static func command(_ arguments: [String], script: String = seed) -> String {
        "/usr/bin/unshare -m /bin/sh -c " + quoted(
            "mount --bind \(cpuinfo) /proc/cpuinfo && exec \(python) \(quoted(script)) "
                + arguments.map(quoted).joined(separator: " "))
    }

    static func run(_ arguments: [String], script: String = seed, environment: [String: String] = [:]) throws
        -> RunResult
    {
        try KVMStatCLITests.run("/bin/sh", ["-c", command(arguments, script: script)], environment: environment)
    }
}

@Suite(.enabled(if: Upstream.available, "needs root, python3, unshare, real KVM and upstream kvm_stat (../shared/seed or Debian's linux-source package)"))
struct UpstreamMessagesTests {
    /// stderr and status as upstream's, for each of upstream's own errors.
    @Test func errorsAsUpstream() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 10, name: "guest=cmp-\(getpid())")
        let pid = "\(workload.pid)"
        let cases: [[String]] = [
            ["-1", "-c"], ["-1", "-z"], ["-1", "-f", "kvm_("], ["-1", "-f", "(?<n>x)"],
            ["-1", "-p", "999999999"], ["-1", "-s", "0.05"], ["-l", "-s", "30"],
            ["-1", "-g", "no-such-guest"], ["-1", "-g", "no-such-guest", "-p", pid],
            ["-1", "-p", pid, "-g", "no-such-guest"], ["-c", "-g", "no-such-guest"],
            ["-1", "-p", pid, "-f", "kvm_("],
        ]
        for arguments in cases {
            let upstream = try Upstream.run(arguments)
            let ours = try run(kvmstatBinary, arguments)
            #expect(ours.stderr == upstream.stderr, "\(arguments)")
            #expect(ours.status == upstream.status, "\(arguments)")
        }
        // A log file that cannot be opened: upstream's words, then the reason.
        let upstream = try Upstream.run(["-L", "/nonexistent/dir/x.log"])
        let ours = try run(kvmstatBinary, ["-L", "/nonexistent/dir/x.log"])
        #expect(ours.stderr.hasPrefix(upstream.stderr.trimmingCharacters(in: .newlines) + " ("), "\(ours.stderr)")
        #expect(ours.status == upstream.status)
    }

    @Test func fieldHelpAsUpstream() throws {
        let upstream = try Upstream.run(["-f", "help"])
        let ours = try run(kvmstatBinary, ["-f", "help"])
        #expect(upstream.status == 0 && ours.status == 0)
        #expect(ours.stdout == upstream.stdout)
    }

    /// debugfs's fields, the histograms' files (`halt_wait_hist`) among them, with a VM running
    /// (upstream lists the fields of running VMs only).
    @Test func debugfsFieldHelpAsUpstream() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 10)
        let (upstream, ours) = try withExtendedLifetime(workload) {
            (try Upstream.run(["-d", "-f", "help"]), try run(kvmstatBinary, ["-d", "-f", "help"]))
        }
        #expect(upstream.status == 0 && ours.status == 0)
        #expect(upstream.stdout.contains("  halt_wait_hist\n"), "the test's premise: \(upstream.stdout)")
        #expect(ours.stdout == upstream.stdout)
    }
}

/// The screens side by side in tmux, watching the same looping guest.
@Suite(.enabled(if: Upstream.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"),
                "needs root, python3, unshare, tmux, real KVM and upstream kvm_stat (../shared/seed or Debian's linux-source package)"))
struct UpstreamScreenTests {
    let name = "kvmstat-cmp-\(getpid())-\(Int.random(in: 0..<1_000_000))"

    /// Both screens, on the same guest, each once `ready` holds.
    func screens(_ arguments: String, _ ready: @escaping ([String]) -> Bool)
        throws -> (ours: TmuxSession, upstream: TmuxSession)
    {
        let ours = try TmuxSession(command: "'\(kvmstatBinary)' \(arguments)")
        let upstream = try TmuxSession(command: Upstream.command(arguments.split(separator: " ").map(String.init)))
        #expect(ours.wait(timeout: 15, ready) != nil, "\(ours.screen())")
        #expect(upstream.wait(timeout: 15, ready) != nil, "\(upstream.screen())")
        return (ours, upstream)
    }

    /// The rows from line 3 to the Total line.
    static func rows(_ screen: [String]) -> [String] {
        guard let total = screen.firstIndex(where: { $0.hasPrefix(" Total ") }) else { return [] }
        return Array(screen[3...total])
    }

    @Test func helpGuestListTotalChildRowsAndDeadGuestAsUpstream() throws {
        let workload = try startLoopingWorkload(name)
        defer { if workload.isRunning { workload.terminate(); workload.waitUntilExit() } }
        let pid = workload.processIdentifier
        let live: ([String]) -> Bool = { lines in
            lines.contains { $0.hasPrefix(" Total ") && ($0.split(separator: " ").last.flatMap { Int($0) } ?? 0) > 0 }
        }
        let (ours, upstream) = try screens("-p \(pid)", live)

        // x: children indented by two spaces; the Total row's average ends under CurAvg/s.
        ours.send("x")
        upstream.send("x")
        let withChildren: ([String]) -> Bool = { lines in
            live(lines) && lines.contains { $0.contains("kvm_userspace_exit(HLT)") }
        }
        let oursRows = try #require(ours.wait(timeout: 10, withChildren))
        let upstreamRows = try #require(upstream.wait(timeout: 10, withChildren))
        let child = { (screen: [String]) in screen.first { $0.contains("kvm_userspace_exit(HLT)") } }
        #expect(child(oursRows)?.prefix(26) == child(upstreamRows)?.prefix(26))
        let total = { (screen: [String]) in screen.first { $0.hasPrefix(" Total ") } }
        #expect(total(oursRows)?.count == total(upstreamRows)?.count, "\(total(oursRows) ?? "") vs \(total(upstreamRows) ?? "")")
        #expect(total(oursRows)?.prefix(42) == total(upstreamRows)?.prefix(42))
        // The same rows (names), each `%-40s %10d%7.1f %8s` from column 1: 68 columns.
        #expect(Set(Self.rows(oursRows).map { $0.prefix(41) }) == Set(Self.rows(upstreamRows).map { $0.prefix(41) }))
        for line in Self.rows(oursRows) + Self.rows(upstreamRows) { #expect(line.count == 68, "\(line)") }

        // h: the help screen, line for line.
        ours.send("h")
        upstream.send("h")
        let help = "Interactive commands reference"
        let oursHelp = try #require(ours.wait(for: help))
        let upstreamHelp = try #require(upstream.wait(for: help))
        // Line for line but those that name what kvmstat adds (README, differences): the
        // sources that show guests, per-vCPU rows under `x`, and the latency view's `l`.
        let added = ["   b     toggle events by guests (debugfs only, honors filters)":
                        "   b     toggle events by guests (tracepoint, debugfs, qmp, libvirt, bpf, vcpu; honors filters)",
                     "   x     toggle reporting of stats for individual child trace events":
                        "   x     toggle reporting of stats for individual child trace events and vCPUs"]
        #expect(oursHelp.contains("   l     toggle the exit latency view (with --source bpf --latency)"))
        #expect(oursHelp.contains("   v     toggle the vCPU time view (with --source vcpu)"))
        #expect(Array(oursHelp.filter { !$0.hasPrefix("   l     ") && !$0.hasPrefix("   v     ") }.prefix(17))
            == Array(upstreamHelp.prefix(17)).map { added[$0] ?? $0 })
        ours.send("z")
        upstream.send("z")

        // g: the guest list's header and our guest's row.
        ours.send("g")
        upstream.send("g")
        let list = "Guest Name (fuzzy list"
        let oursList = try #require(ours.wait(for: list))
        let upstreamList = try #require(upstream.wait(for: list))
        let header = { (screen: [String]) in screen.first { $0.contains(list) } }
        #expect(header(oursList) == header(upstreamList))
        let row = { (screen: [String]) in screen.first { $0.contains(self.name) } }
        #expect(row(oursList) != nil && row(oursList) == row(upstreamList))
        // Back to the guest (upstream's empty answer would leave it for the summary).
        ours.type("\(pid)")
        upstream.type("\(pid)")
        #expect(ours.wait(timeout: 10, live) != nil && upstream.wait(timeout: 10, live) != nil)

        // The guest ends: the headline with upstream's marker, at upstream's column.
        workload.terminate()
        workload.waitUntilExit()
        let dead = "Guest is DEAD"
        let oursDead = try #require(ours.wait(timeout: 10) { $0.first?.contains(dead) == true })
        let upstreamDead = try #require(upstream.wait(timeout: 10) { $0.first?.contains(dead) == true })
        #expect(oursDead.first == upstreamDead.first)
    }

    /// Ctrl-C quits from the help screen with status 0, as upstream (its KeyboardInterrupt
    /// ends the screen). In a dialog kvmstat quits too, where upstream takes Ctrl-C as a
    /// character of the answer (`a^C` becomes the regex): README, "Differences".
    @Test(arguments: [("h", "Interactive commands reference"), ("f", "Show statistics for events matching"),
                      ("s", "Set update interval"), ("g", "Show statistics for specific guest")])
    func controlCQuitsFromHelpAndDialogs(key: String, shown: String) throws {
        let (ours, upstream) = try screens("-s 0.5", { $0.first?.hasPrefix("kvm statistics") == true })
        for screen in [ours, upstream] {
            screen.send(key)
            #expect(screen.wait(for: shown) != nil, "\(screen.screen())")
            if key != "h" { screen.send("-l", "a") }  // something typed, not yet entered
            screen.send("C-c")
        }
        #expect(ours.wait(for: "EXIT=0") != nil, "\(ours.screen())")
        if key == "h" {
            #expect(upstream.wait(for: "EXIT=0") != nil, "\(upstream.screen())")
        } else {
            #expect(upstream.wait(for: "a^C") != nil, "\(upstream.screen())")
        }
    }
}
