import Foundation
import KVMTestSupport
import Testing

/// The interactive screen of the built binary in a 120×40 tmux pane against a running,
/// named workload.
@Suite(.enabled(if: Kernel.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"),
                realKernelNeeded))
struct ScreenTests {
    let name = "kvmstat-tui-\(getpid())-\(Int.random(in: 0..<1_000_000))"

    /// A guest named in wide characters with a right-to-left override: the headline stays on
    /// its line (cut by columns), the override is shown escaped.
    @Test func wideAndBidiGuestNameStaysOnItsLine() throws {
        let hostile = String(repeating: "虚", count: 40) + "\u{202E}" + name
        let workload = try startLoopingWorkload(hostile)
        defer { workload.terminate(); workload.waitUntilExit() }
        let tmux = try TmuxSession(
            command: "LANG=C.UTF-8 '\(kvmstatBinary)' -p \(workload.processIdentifier) -f 'kvm_pio' -s 1")
        let screen = try #require(tmux.wait(for: "regex filter"), "\(tmux.screen())")
        #expect(screen[0] == "kvm statistics - pid \(workload.processIdentifier) ("
            + String(repeating: "虚", count: 24) + "...)", "\(screen[0])")
        #expect(screen[1] == String(repeating: " ", count: 17) + "regex filter: kvm_pio")
        tmux.send("g")
        let list = try #require(tmux.wait(for: "\\u202e"), "\(tmux.screen())")
        let row = try #require(list.first { $0.contains("\\u202e") })
        #expect(!row.contains("\u{202E}"))
    }

    @Test func headerRowsAndKeys() throws {
        let workload = try startLoopingWorkload(name)
        defer { workload.terminate(); workload.waitUntilExit() }
        let pid = workload.processIdentifier
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' -p \(pid) -s 1")
        // After the first frame (whose averages are 0, as upstream's are), live averages.
        let screen = try #require(tmux.wait { lines in
            lines.contains { $0.hasPrefix(" Total ") } && lines.contains {
                $0.hasPrefix(" kvm_pio ") && (Int($0.split(separator: " ").last ?? "") ?? 0) > 0
            }
        }, "rows with live averages and a Total")
        #expect(screen[0] == "kvm statistics - pid \(pid) (\(name))")
        #expect(screen[2] == " Event                                         Total %Total CurAvg/s")
        #expect(screen.contains { $0.hasPrefix(" kvm_pio ") })
        // Rows: name, total, %total, current average; the average is live.
        let pio = try #require(screen.first { $0.hasPrefix(" kvm_pio ") })
        let columns = pio.split(separator: " ")
        #expect(columns.count == 4 && Int(columns[3]) ?? 0 > 0, "\(pio)")

        // x: child events, indented under their parent.
        tmux.send("x")
        #expect(tmux.wait(for: "  kvm_userspace_exit(HLT)") != nil)
        tmux.send("x")
        #expect(tmux.wait { !$0.contains { $0.contains("(HLT)") } } != nil)

        // h: the help screen; any key returns.
        tmux.send("h")
        #expect(tmux.wait(for: "Interactive commands reference") != nil)
        #expect(tmux.screen().contains("   x     toggle reporting of stats for individual child trace events and vCPUs"))
        #expect(tmux.screen().contains("   b     toggle events by guests (tracepoint, debugfs, qmp, libvirt, bpf, vcpu; honors filters)"))
        tmux.send("z")
        #expect(tmux.wait(for: "CurAvg/s") != nil)

        // f: an invalid regex is reported and asked again; a valid one filters.
        tmux.send("f")
        #expect(tmux.wait(for: "Show statistics for events matching a regex.") != nil)
        tmux.type("kvm_(")
        #expect(tmux.wait(for: "\"kvm_(\": Not a valid regular expression") != nil)
        tmux.type("kvm_pio")
        let filtered = tmux.wait { $0.count > 3 && $0[1].contains("regex filter: kvm_pio") && $0[3].hasPrefix(" kvm_pio") }
        #expect(filtered != nil)
        #expect(!(filtered ?? []).contains { $0.hasPrefix(" kvm_fpu") })

        // c: clears the filter and the pid.
        tmux.send("c")
        #expect(tmux.wait { $0.first == "kvm statistics - summary" && !$0[1].contains("regex") } != nil)

        // g: the guest dialog lists the guest; its errors; then the name selects it.
        tmux.send("g")
        let dialog = try #require(tmux.wait(for: "Guest or pid [ENTER exits]:"))
        #expect(dialog.contains { $0.contains("Guest Name (fuzzy list, might be inaccurate!)") })
        #expect(dialog.contains { $0.contains("\(pid)  \(name)") })
        tmux.type("no-such-guest")
        #expect(tmux.wait(for: "\"no-such-guest\": Not an active guest") != nil)
        tmux.type("999999999")
        #expect(tmux.wait(for: "\"999999999\": Not a running process") != nil)
        tmux.type(name)
        #expect(tmux.wait { $0.first == "kvm statistics - pid \(pid) (\(name))" } != nil)

        // b: with tracepoints too (kvmstat counts guests through their cgroups; upstream
        // refuses): the watched guest's row, by name.
        tmux.send("b")
        #expect(tmux.wait(for: "Guest Name") != nil, "\(tmux.screen())")
        tmux.send("b")
        #expect(tmux.wait(for: " Event ") != nil, "\(tmux.screen())")

        // s: the delay dialog checks the range.
        tmux.send("s")
        #expect(tmux.wait(for: "Change delay from 1.0s to") != nil)
        tmux.type("50")
        #expect(tmux.wait(for: "\"50.0\": Delay must be <=25.5") != nil)
        tmux.type("x")
        #expect(tmux.wait(for: "\"x\": Invalid value") != nil)
        tmux.type("0.5")
        #expect(tmux.wait(for: "CurAvg/s") != nil)

        // o: sort by total — kvm_fpu has the largest total of this workload.
        tmux.send("o")
        #expect(tmux.wait { $0.count > 3 && $0[3].hasPrefix(" kvm_fpu") } != nil)

        // r: reset — totals start again from zero, so they are small right after.
        let before = Int(tmux.screen().first { $0.hasPrefix(" Total ") }?.split(separator: " ")[1] ?? "") ?? 0
        tmux.send("r")
        let after = tmux.wait(timeout: 5) { lines in
            guard let total = lines.first(where: { $0.hasPrefix(" Total ") }) else { return false }
            return (Int(total.split(separator: " ")[1]) ?? .max) < before
        }
        #expect(after != nil)

        // q: back to the shell with status 0.
        let start = Date()
        tmux.send("q")
        #expect(tmux.wait(for: "EXIT=0") != nil)
        let elapsed = Date().timeIntervalSince(start)
        #expect(elapsed < 2.5, "q took \(elapsed) s")
    }

    @Test func byGuestWithDebugfsAndResize() throws {
        let workload = try startLoopingWorkload(name)
        defer { workload.terminate(); workload.waitUntilExit() }
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' -d -s 0.5")
        #expect(tmux.wait(for: " Event ") != nil)
        tmux.send("b")
        #expect(tmux.wait(for: " Guest Name ") != nil)
        tmux.send("b")
        #expect(tmux.wait(for: " Event ") != nil)
        // A resize redraws at once, cut to the new height.
        tmux.resize(width: 80, height: 8)
        let small = tmux.wait(timeout: 2) { $0.first == "kvm statistics - summary" && $0.count <= 9 }
        #expect(small != nil)
        tmux.send("C-c")
        #expect(tmux.wait(for: "EXIT=0") != nil)
    }

    @Test func deadGuestAndReattachByName() throws {
        let first = try startLoopingWorkload(name)
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' -g \(name) -s 0.5")
        #expect(tmux.wait(for: "(\(name))") != nil)
        first.terminate()
        first.waitUntilExit()
        let dead = tmux.wait(for: " Guest is DEAD")  // capture-pane drops the trailing blank
        #expect(dead != nil, "\(tmux.screen().prefix(6).joined(separator: "\n"))")
        let second = try startLoopingWorkload(name)
        defer { second.terminate(); second.waitUntilExit() }
        #expect(tmux.wait(for: "kvm statistics - pid \(second.processIdentifier) (\(name))") != nil)
        tmux.send("q")
        #expect(tmux.wait(for: "EXIT=0") != nil)
    }
}
