import Foundation
import KVMCore

/// A real QEMU guest (Debian's qemu-system-x86) running a tiny firmware image: `outs` writes
/// to port 0x80, then `cli; hlt`. Under this KVM each write is one exit, so a guest's `exits`
/// is `outs` plus a constant (measured with `outs` 0), and `halt_exits` is 1.
public final class QEMUGuest {
    public static let binary = "/usr/bin/qemu-system-x86_64"
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    public let name: String
    public let socket: String
    /// The monitor QEMU keeps for kvmstat (chardev id `kvmstat`), when asked for.
    public let reservedSocket: String?
    /// The monitor `command` uses: the operator's, or the reserved one when alone.
    private let commandSocket: String
    public let outs: Int
    private let process = Process()
    private let directory: String

    /// The firmware: 64 KiB, the reset vector at 0xFFF0 jumping to F000:0000, where
    /// `mov cx, OUTS; mov dx, 0x80; mov al, 0; jcxz done; l: out dx, al; loop l; done: cli; hlt`.
    public static func firmware(outs: Int) -> Data {
        precondition((0...0xFFFF).contains(outs))
        var image = Data(repeating: 0xF4, count: 65536)
        let code: [UInt8] = [0xB9, UInt8(outs & 0xFF), UInt8(outs >> 8), 0xBA, 0x80, 0x00, 0xB0, 0x00,
                             0xE3, 0x03, 0xEE, 0xE2, 0xFD, 0xFA, 0xF4, 0xEB, 0xFD]
        image.replaceSubrange(0..<code.count, with: code)
        image.replaceSubrange(0xFFF0..<0xFFF5, with: [0xEA, 0x00, 0x00, 0x00, 0xF0])
        return image
    }

    /// Monitors a guest may have: the operator's (`-qmp`), the one kept for kvmstat
    /// (`-chardev socket,id=kvmstat` with `-mon`), or both.
    public enum Monitors {
        case shared, reserved, both
    }

    /// Starts the guest (paused with `paused`, until `resume`) and waits for its monitor(s).
    /// `maxVCPUs`: room for vCPUs plugged later (`device_add`).
    public init(outs: Int, vcpus: Int = 1, maxVCPUs: Int? = nil, paused: Bool = false, name: String? = nil,
                monitors: Monitors = .shared) throws {
        self.outs = outs
        self.name = name ?? "kvmstat-qemu-\(getpid())-\(UUID().uuidString.prefix(8))"
        directory = NSTemporaryDirectory() + "kvmstat-qemu-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/qmp.sock"
        reservedSocket = monitors == .shared ? nil : directory + "/kvmstat.sock"
        commandSocket = monitors == .reserved ? reservedSocket! : socket
        let bios = directory + "/bios.bin"
        try Self.firmware(outs: outs).write(to: URL(fileURLWithPath: bios))
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["-enable-kvm", "-cpu", "max,-arch-capabilities", "-nodefaults", "-display", "none",
                             "-m", "16", "-smp", "\(vcpus)" + (maxVCPUs.map { ",maxcpus=\($0)" } ?? ""), "-bios", bios,
                             "-name", "guest=\(self.name)"]
            + (monitors == .reserved ? [] : ["-qmp", "unix:\(socket),server=on,wait=off"])
            + (reservedSocket.map { ["-chardev", "socket,id=kvmstat,path=\($0),server=on,wait=off",
                                     "-mon", "chardev=kvmstat,mode=control"] } ?? [])
            + (paused ? ["-S"] : [])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        let awaited = (monitors == .reserved ? [] : [socket]) + (reservedSocket.map { [$0] } ?? [])
        while !awaited.allSatisfy(FileManager.default.fileExists(atPath:)) && Date() < deadline { usleep(10_000) }
        guard awaited.allSatisfy(FileManager.default.fileExists(atPath:)) else {
            stop()
            throw Failure(description: "QEMU did not open its monitors at \(awaited)")
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public struct Failure: Error, CustomStringConvertible { public let description: String }

    public var pid: Int32 { process.processIdentifier }

    /// Ends the guest (SIGKILL: a test runner may have blocked SIGTERM, and QEMU inherits that).
    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// A client of the monitor, retried while another holds it.
    private func connect(deadline: Double) throws -> UnixSocket {
        while true {
            do {
                return try UnixSocket(path: commandSocket, deadline: deadline)
            } catch {
                guard error.rawValue == ECONNREFUSED, Signals.monotonicNow() < deadline else { throw error }
                usleep(20_000)
            }
        }
    }

    /// Runs one QMP command with a client of its own and returns the answer line.
    @discardableResult
    public func command(_ json: String) throws -> String {
        let deadline = Signals.monotonicNow() + 5
        // QEMU serves one monitor client at a time: while a kvmstat of another test holds it,
        // a connection is refused; try again until the deadline.
        let client = try connect(deadline: deadline)
        _ = try client.readLine(deadline: deadline)
        try client.send("{\"execute\": \"qmp_capabilities\"}\n", deadline: deadline)
        _ = try client.readLine(deadline: deadline)
        try client.send(json + "\n", deadline: deadline)
        while true {
            let line = String(decoding: try client.readLine(deadline: deadline), as: UTF8.self)
            if !line.contains("\"event\"") { return line }
        }
    }

    /// Lets a guest started paused run.
    public func resume() throws { try command("{\"execute\": \"cont\"}") }

    /// Waits until the guest has halted (QEMU reports its vCPU halted or the run state).
    public func waitUntilHalted(timeout: Double = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let answer = try command("{\"execute\": \"query-stats\", \"arguments\": {\"target\": \"vcpu\", \"providers\": [{\"provider\": \"kvm\", \"names\": [\"halt_exits\"]}]}}")
            if answer.contains("\"value\": 1") || answer.contains("\"value\":1") { return }
            usleep(20_000)
        }
        throw Failure(description: "the guest did not halt")
    }
}
