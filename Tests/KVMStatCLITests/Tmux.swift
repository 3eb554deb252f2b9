import Foundation

/// A tmux server of its own (one socket per test) running one command in a pane, driven by
/// send-keys and read by capture-pane, as a person at a terminal would.
final class TmuxSession {
    let socket = "kvmstat-test-\(UUID().uuidString.prefix(8))"

    init(width: Int = 120, height: Int = 40, command: String) throws {
        // The shell reports how kvmstat ended, and keeps the pane for reading afterwards.
        let wrapped = "\(command); echo EXIT=$?; sleep 30"
        // The server it starts keeps whatever descriptors it inherits, so Foundation's
        // Process would wait for it forever: spawn the client plainly and reap it.
        let arguments = ["/usr/bin/tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d",
                         "-x", "\(width)", "-y", "\(height)", wrapped]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for target: Int32 in [0, 1, 2] {
            posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_RDWR, 0)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ) == 0 else {
            throw Failure(description: "cannot start tmux")
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        guard status == 0 else { throw Failure(description: "tmux new-session failed: \(status)") }
    }

    deinit { _ = try? tmux(["kill-server"]) }

    struct Failure: Error, CustomStringConvertible { let description: String }

    @discardableResult
    func tmux(_ arguments: [String]) throws -> RunResult {
        try run("/usr/bin/tmux", ["-L", socket, "-f", "/dev/null"] + arguments)
    }

    func screen() -> [String] {
        let text = (try? tmux(["capture-pane", "-p"]))?.stdout ?? ""
        return text.components(separatedBy: "\n")
    }

    func send(_ keys: String...) {
        _ = try? tmux(["send-keys"] + keys)
    }

    /// Types `text` literally, then Enter.
    func type(_ text: String) {
        _ = try? tmux(["send-keys", "-l", text])
        _ = try? tmux(["send-keys", "Enter"])
    }

    func resize(width: Int, height: Int) {
        _ = try? tmux(["resize-window", "-x", "\(width)", "-y", "\(height)"])
    }

    /// Polls the screen until `condition` holds; returns the screen it held on, or nil.
    @discardableResult
    func wait(timeout: Double = 10, _ condition: ([String]) -> Bool) -> [String]? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let lines = screen()
            if condition(lines) { return lines }
            usleep(50_000)
        }
        return nil
    }

    func wait(for text: String, timeout: Double = 10) -> [String]? {
        wait(timeout: timeout) { $0.contains { $0.contains(text) } }
    }
}
