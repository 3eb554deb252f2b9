import Foundation
import KVMBuiltins
import KVMTestSupport
import Testing

/// kvmstat installed as a drop-in for kvm_stat (a `kvm_stat` link, started by nohup or a
/// script), beside upstream's script installed under the same name: what a script that ran
/// kvm_stat sees must not change.
@Suite(.enabled(if: Upstream.available, "needs root, python3, unshare, real KVM and upstream kvm_stat (../shared/seed or Debian's linux-source package)"))
struct DropInTests {
    /// A directory with `kvm_stat`, a link to kvmstat, and `upstream/kvm_stat`, a copy of
    /// upstream's script (argparse names the program after argv[0]'s last part).
    final class Installed {
        let directory: String
        var ours: String { directory + "/kvm_stat" }
        var upstream: String { directory + "/upstream/kvm_stat" }

        init() throws {
            directory = NSTemporaryDirectory() + "kvmstat-dropin-\(getpid())-\(Int.random(in: 0..<1_000_000))"
            try FileManager.default.createDirectory(atPath: directory + "/upstream", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: ours, withDestinationPath: kvmstatBinary)
            try FileManager.default.copyItem(atPath: Upstream.seed, toPath: upstream)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// argparse's mistakes under the name kvmstat was run as: status 2, `usage: kvm_stat`, and
    /// the same `kvm_stat: error:` line — `--` as argparse takes it when there are no
    /// positional arguments (it and everything after it are unrecognized).
    @Test(arguments: [["-1", "--"], ["--", "-1"], ["-1", "--", "--"], ["x", "--", "-1"], ["-x"], ["-s"],
                      ["-s", "--", "1"], ["--bogus=1"], ["-1", "-1x"]])
    func argparseErrorsUnderTheInvokedName(arguments: [String]) throws {
        let installed = try Installed()
        let environment = ["COLUMNS": "80"]
        let upstream = try Upstream.run(arguments, script: installed.upstream, environment: environment)
        let ours = try run(installed.ours, arguments, environment: environment)
        #expect(upstream.status == 2 && ours.status == 2, "\(arguments): \(ours.stderr)")
        let lastLine: (String) -> Substring? = { $0.split(separator: "\n").last }
        #expect(lastLine(ours.stderr) == lastLine(upstream.stderr), "\(arguments)")
        #expect(lastLine(ours.stderr)?.hasPrefix("kvm_stat: error: ") == true)
        let start = "usage: kvm_stat [-h] [-1] [-c] [-d] [-f FIELDS] [-g GUEST] [-i] [-l]"
        #expect(upstream.stderr.hasPrefix(start) && ours.stderr.hasPrefix(start), "\(ours.stderr)")
    }

    /// `-h` laid out by argparse's rules at any width: one blank line after the usage block;
    /// the description upstream's but for three lines kvmstat decided (README, "Differences");
    /// upstream's option lines, byte for byte, before kvmstat's own.
    @Test(arguments: ["80", "120", "60", "40"])
    func helpAsUpstream(columns: String) throws {
        let installed = try Installed()
        let upstream = try Upstream.run(["-h"], script: installed.upstream, environment: ["COLUMNS": columns])
        let ours = try run(installed.ours, ["-h"], environment: ["COLUMNS": columns])
        #expect(upstream.status == 0 && ours.status == 0)
        // Usage block, description, options: argparse's sections, one blank line apart.
        func sections(_ text: String) -> (description: [String], options: [String]) {
            let blocks = text.components(separatedBy: "\n\n")
            let optionsAt = blocks.firstIndex { $0.hasPrefix("options:") } ?? blocks.count
            return (blocks[1..<optionsAt].joined(separator: "\n\n").components(separatedBy: "\n"),
                    blocks[optionsAt...].joined(separator: "\n\n").components(separatedBy: "\n"))
        }
        let (upDescription, upOptions) = sections(upstream.stdout)
        let (ourDescription, ourOptions) = sections(ours.stdout)
        #expect(upDescription.count == ourDescription.count)
        let guestSources = Builtins.plugins.sources.entries.filter(\.byGuest).map(\.name).joined(separator: ", ")
        let differing = zip(upDescription, ourDescription).filter { $0 != $1 }
        #expect(differing.map(\.0) == [
            "This script displays various statistics about VMs running under KVM.",
            "    /sys/kernel/debug/tracing/events/*",
            "   b     toggle events by guests (debugfs only, honors filters)",
        ], "\(differing)")
        #expect(differing.map(\.1) == [
            "This program displays various statistics about VMs running under KVM.",
            "    /sys/kernel/tracing/events/*",
            "   b     toggle events by guests (\(guestSources); honors filters)",
        ], "\(differing)")
        let upstreamLines = upOptions.filter { !$0.isEmpty }
        #expect(Array(ourOptions.prefix(upstreamLines.count)) == upstreamLines, "\(ours.stdout)")
        #expect(upstream.stdout.hasPrefix("usage: kvm_stat [-h]") && ours.stdout.hasPrefix("usage: kvm_stat [-h]"))
    }

    /// Started with SIGHUP, SIGINT and SIGQUIT ignored (nohup; a script's background job),
    /// both keep logging through all three, and SIGTERM ends both alike.
    @Test func ignoredSignalsStayIgnoredAsUpstream() throws {
        let ignoring = "trap '' HUP INT QUIT; exec "
        let ours = try BackgroundKvmstat(["-c", ignoring + "'\(kvmstatBinary)' -l -s 0.1"], executable: "/bin/sh")
        let upstream = try BackgroundKvmstat(["-c", ignoring + Upstream.command(["-l", "-s", "0.1"])],
                                             executable: "/bin/sh")
        for log in [ours, upstream] { #expect(log.waitForLines(3, within: 20)) }
        for signal in [SIGHUP, SIGINT, SIGQUIT] {
            ours.signal(signal)
            upstream.signal(signal)
        }
        for log in [ours, upstream] {
            // Records keep coming after all three.
            let seen = log.linesSoFar
            #expect(log.waitForLines(seen + 3, within: 10))
            #expect(log.process.isRunning)
        }
        ours.signal(SIGTERM)
        upstream.signal(SIGTERM)
        let ourEnd = ours.exit(within: 5)
        let upstreamEnd = upstream.exit(within: 5)
        #expect(ourEnd != nil && ourEnd?.status == upstreamEnd?.status && ourEnd?.bySignal == upstreamEnd?.bySignal,
                "ours \(String(describing: ourEnd)), upstream \(String(describing: upstreamEnd))")
    }
}

/// Without upstream: what nohup must not take away.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct NohupTests {
    /// `-L` under nohup: SIGHUP is logrotate's request to reopen the file, so it is taken
    /// even though it was ignored at start (upstream's -L handler takes it too); SIGINT stays
    /// ignored.
    @Test func logFileIsReopenedOnSighupEvenWhenIgnoredAtStart() throws {
        let directory = NSTemporaryDirectory() + "kvmstat-nohup-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/kvm.log"
        let ours = try BackgroundKvmstat(["-c", "trap '' HUP INT; exec '\(kvmstatBinary)' -L '\(log)' -s 0.1"],
                                         executable: "/bin/sh")
        let lines = { (path: String) in
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
        }
        #expect(waitUntil { lines(log) >= 3 })
        try FileManager.default.moveItem(atPath: log, toPath: log + ".1")
        ours.signal(SIGINT)
        ours.signal(SIGHUP)
        #expect(waitUntil { lines(log) >= 2 }, "no new file after SIGHUP")
        #expect(ours.process.isRunning)
        ours.signal(SIGTERM)
        #expect(ours.exit(within: 5)?.status == SIGTERM)
    }
}
