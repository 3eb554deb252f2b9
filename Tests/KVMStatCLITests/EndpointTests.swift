import Foundation
import KVMCore
import KVMTestSupport
@testable import KVMStatApp
import Testing

/// `--listen` against clients that HTTP allows but the endpoint once refused, and against a
/// local user holding connections open: on a fake debugfs tree, no kernel needed.
@Suite(.serialized) struct EndpointTests {
    /// Runs `body` with the port of kvmstat serving a fake tree's statistics, and stops it.
    static func serving(_ body: (Int) throws -> Void) throws {
        let tree = try FakeTree(fields: ["exits", "halt_exits"])
        let port = try HTTPClient.freePort()
        let server = try BackgroundKvmstat(["-d", "-i", "--listen", "\(port)", "-s", "0.1"], environment: tree.environment)
        defer {
            server.signal(SIGINT)
            _ = server.finish()
        }
        #expect(waitUntil { (try? HTTPClient.get(port: port, path: "/metrics"))?.status == 200 }, "serving")
        try body(port)
    }

    @Test func absoluteFormAndBareLineFeedsAreRequests() throws {
        try Self.serving { port in
            // RFC 9112 §3.2.2: a server must accept the absolute form.
            let absolute = try HTTPClient.exchange(port: port, raw: Array(
                "GET http://127.0.0.1:\(port)/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            #expect(absolute.status == 200 && absolute.body.contains("kvm_exits_total"), "\(absolute.head)")
            // A head whose last line break is a bare LF (`\n\r\n`, `\n\n`).
            for ending in ["\n\r\n", "\n\n"] {
                let bare = try HTTPClient.exchange(port: port, raw: Array("GET /metrics HTTP/1.0\(ending)".utf8))
                #expect(bare.status == 200, "\(ending.debugDescription): \(bare.head)")
            }
            #expect(MetricsServer.originForm("https://h/x?y=1") == "/x?y=1" && MetricsServer.originForm("http://h") == "/")
            #expect(MetricsServer.originForm("ftp://h/x") == nil && MetricsServer.originForm("metrics") == nil)
        }
    }

    @Test func connectionsThatGotTheirAnswerAreEvictedToo() throws {
        try Self.serving { port in
            // A local user fills every slot with connections that asked, got their answer, and
            // stay open (the server drains them a while before closing).
            var held: [Int32] = []
            defer { for fd in held { close(fd) } }
            for _ in 0..<(MetricsServer.maxConnections + 20) {
                let fd = try HTTPClient.connect(port: port)
                _ = Array("GET / HTTP/1.0\r\n\r\n".utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                held.append(fd)
            }
            // Scrapes still get through, each evicting one of them.
            for _ in 0..<10 {
                let scrape = try HTTPClient.get(port: port, path: "/metrics")
                #expect(scrape.status == 200 && scrape.body.contains("kvm_exits_total"), "\(scrape.head)")
            }
        }
    }

    @Test func zoneIdentifiersBind() throws {
        // `::1` with the loopback's zone, by name and by number.
        let loopback = if_nametoindex("lo")
        #expect(loopback > 0)
        for address in ["::1%lo", "::1%\(loopback)"] {
            let listener = try TCPListener(address: address, port: 0)
            #expect(listener.port > 0, "\(address)")
        }
        #expect(throws: Errno.noSuchDevice) { try TCPListener(address: "::1%no-such-interface", port: 0) }
        #expect(throws: Errno.invalidArgument) { try TCPListener(address: "127.0.0.1%lo", port: 0) }
        let tree = try FakeTree(fields: ["exits"])
        let port = try HTTPClient.freePort()
        let server = try BackgroundKvmstat(["-d", "--listen", "[::1%lo]:\(port)", "-s", "0.1"], environment: tree.environment)
        #expect(waitUntil {
            (try? HTTPClient.exchange(port: port, raw: Array("GET /metrics HTTP/1.0\r\n\r\n".utf8), ipv6: true))?.status == 200
        })
        server.signal(SIGINT)
        let result = server.finish()
        #expect(result.status == 0 && result.stderr.hasPrefix("kvmstat: serving metrics at http://[::1%lo]:\(port)/metrics"),
                "\(result.stderr)")
    }
}
