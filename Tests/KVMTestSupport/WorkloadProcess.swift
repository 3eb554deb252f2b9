import Foundation

/// A running `kvmstat-workload`: real VMs whose vCPU threads exist from the start and run
/// their out/out/hlt loop on command, giving exactly known exit counts per vCPU:
/// `kvm_userspace_exit(IO)` 2N, `kvm_userspace_exit(HLT)` N, `kvm_pio` 2N.
public final class WorkloadProcess {
    public let pid: Int32
    public let iterations: Int
    public private(set) var threads: Int
    private let process: Process
    private let input: FileHandle
    private let output: FileHandle
    private var pending = Data()

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Whether it takes commands (not with `--loop`, which runs until it is ended).
    private let interactive: Bool

    /// Starts the workload and waits until its vCPU threads exist. `extra`: more of its options
    /// (`--loop 0` keeps the guests busy from the start, `--churn 20:5` starts and ends
    /// threads).
    public init(vms: Int = 1, vcpus: Int = 1, iterations: Int, name: String? = nil,
                extra: [String] = []) throws {
        self.iterations = iterations
        interactive = !extra.contains("--loop")
        process = Process()
        process.executableURL = URL(fileURLWithPath: Kernel.productsDirectory + "/kvmstat-workload")
        var arguments = ["--vms", "\(vms)", "--vcpus", "\(vcpus)", "--iterations", "\(iterations)"]
        if let name { arguments += ["-name", name] }
        arguments += extra
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        input = stdin.fileHandleForWriting
        output = stdout.fileHandleForReading
        pid = process.processIdentifier
        threads = 0
        let ready = try readLine()
        let words = ready.split(separator: " ")
        guard words.first == "ready", words.count == 3, let count = Int(words[2]) else {
            throw Failure(description: "kvmstat-workload did not start: '\(ready)'")
        }
        threads = count
    }

    deinit { stop() }

    /// Runs every vCPU's loop once and waits until all are done.
    public func run() throws { try command("run", expect: "done") }

    /// Adds vCPU threads to the first VM (vCPU hotplug).
    public func addVCPUs(_ count: Int) throws { try command("add \(count)", expect: "added") }

    /// Adds VMs with the workload's vCPU count each.
    public func addVMs(_ count: Int) throws { try command("vm \(count)", expect: "added") }

    /// Destroys the newest VM.
    public func destroyVM() throws { try command("destroy", expect: "destroyed") }

    public func stop() {
        guard process.isRunning else { return }
        if interactive {
            try? input.write(contentsOf: Data("quit\n".utf8))
        } else {
            kill(pid, SIGCONT)
            process.terminate()
        }
        process.waitUntilExit()
    }

    /// Stops every thread (SIGSTOP), so counts hold still while they are read; a vCPU in the
    /// guest leaves it with one `kvm_userspace_exit(INTR)`.
    public func pause() { kill(pid, SIGSTOP) }

    public func resume() { kill(pid, SIGCONT) }

    private func command(_ line: String, expect: String) throws {
        try input.write(contentsOf: Data((line + "\n").utf8))
        let answer = try readLine()
        guard answer.hasPrefix(expect) else {
            throw Failure(description: "kvmstat-workload answered '\(answer)' to '\(line)'")
        }
        if expect == "added", let count = Int(answer.split(separator: " ").last ?? "") {
            threads = count
        }
    }

    private func readLine() throws -> String {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                return line
            }
            let chunk = output.availableData
            if chunk.isEmpty { throw Failure(description: "kvmstat-workload exited") }
            pending.append(chunk)
        }
    }
}
