import Foundation
import KVMCore

/// A plain HTTP/1.1 client on a TCP socket to 127.0.0.1 (the tests' servers listen there
/// only): one request, the whole answer read until the server closes, bounded by a timeout.
public enum HTTPClient {
    public struct Response {
        public let status: Int
        public let head: String
        public let body: String
        /// The body's bytes as sent (a gzipped answer's are not text).
        public var bodyBytes: [UInt8] = []
    }

    public struct Failure: Error, CustomStringConvertible { public let description: String }

    /// A connected socket to the loopback, IPv4's (`127.0.0.1`) or IPv6's (`::1`), or a failure.
    public static func connect(port: Int, ipv6: Bool = false) throws -> Int32 {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result: Int32
        if ipv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port)).bigEndian
            _ = inet_pton(AF_INET6, "::1", &address.sin6_addr)
            result = connect(fd, &address)
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port)).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            result = connect(fd, &address)
        }
        guard result == 0 else {
            close(fd)
            throw Failure(description: "connect to \(port) failed: \(errno)")
        }
        return fd
    }

    private static func connect<Address>(_ fd: Int32, _ address: inout Address) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<Address>.size)) }
        }
    }

    /// Sends `raw` bytes and reads the answer until the server closes.
    public static func exchange(port: Int, raw: [UInt8], ipv6: Bool = false) throws -> Response {
        let fd = try connect(port: port, ipv6: ipv6)
        defer { close(fd) }
        var offset = 0
        while offset < raw.count {
            let n = raw[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }  // the server may answer (and close) before taking it all
            offset += n
        }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw Failure(description: "no HTTP answer: \(text.prefix(200))") }
        let head = String(text[..<split.lowerBound])
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        let headLength = head.utf8.count + 4
        return Response(status: status, head: head, body: String(text[split.upperBound...]),
                        bodyBytes: Array(data[min(headLength, data.count)...]))
    }

    public static func get(port: Int, path: String, headers: [String] = []) throws -> Response {
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
            + headers.map { $0 + "\r\n" }.joined() + "\r\n"
        return try exchange(port: port, raw: Array(request.utf8))
    }

    /// A port free on 127.0.0.1 now (the kernel's pick for port 0).
    public static func freePort() throws -> Int {
        let listener = try TCPListener(address: "127.0.0.1", port: 0)
        return listener.port
    }
}

/// A server binary from Debian, started on 127.0.0.1 by a test and killed when released.
public final class ServerProcess {
    public let port: Int
    public let directory: String
    private let process = Process()

    public init(_ binary: String, arguments: (_ port: Int, _ directory: String) -> [String],
                files: [String: String] = [:], readyPath: String = "/") throws {
        port = try HTTPClient.freePort()
        directory = NSTemporaryDirectory() + "kvmstat-server-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: directory + "/" + name, atomically: false, encoding: .utf8) }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments(port, directory)
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        let log = directory + "/server.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if (try? HTTPClient.get(port: port, path: readyPath))?.status == 200 { return }
            usleep(100_000)
        }
        stop()
        throw HTTPClient.Failure(description: "\(binary) did not start: "
            + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? ""))
    }

    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Debian's Prometheus and node_exporter.
public enum PrometheusBinaries {
    public static let prometheus = "/usr/bin/prometheus"
    public static let promtool = "/usr/bin/promtool"
    public static let nodeExporter = "/usr/bin/prometheus-node-exporter"
    public static var installed: Bool {
        [prometheus, promtool, nodeExporter].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A Prometheus on 127.0.0.1 scraping the kvmstat at `port` every second as job `kvmstat`,
    /// evaluating `ruleFiles` every second.
    public static func scraping(port: Int, ruleFiles: [String] = []) throws -> ServerProcess {
        let rules = ruleFiles.isEmpty ? "" : "rule_files:\n" + ruleFiles.map { "  - \($0)\n" }.joined()
        let config = """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            \(rules)scrape_configs:
              - job_name: kvmstat
                static_configs:
                  - targets: ['127.0.0.1:\(port)']
            """
        return try ServerProcess(prometheus, arguments: { promPort, directory in
            ["--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
             "--web.listen-address=127.0.0.1:\(promPort)"]
        }, files: ["prometheus.yml": config], readyPath: "/-/ready")
    }
}
