import Foundation
import Logging
import Testing
import TestSupport
@testable import AMQP

/// AMQP over TLS against the real broker, with a CA, server and client certificates made here.
@Suite("AMQP client over TLS", .enabled(if: TestEnvironment.shouldRun(BrokerProcess.prerequisites + [.command("openssl", package: "openssl")]), "needs rabbitmq-server and openssl"))
struct AMQPTLSTests {
    let logger = Logger(label: "amqp-tls")

    /// A CA, a certificate for the broker (127.0.0.1 and localhost), one for the client "host-a",
    /// and an unrelated CA.
    static func certificates(in directory: TemporaryDirectory) async throws {
        let dir = directory.url.path
        let script = """
            set -e
            cd '\(dir)'
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=fence-test-ca -keyout ca.key -out ca.pem 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=someone-else -keyout other.key -out other-ca.pem 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext
            openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -subj /CN=host-a -keyout client.key -out client.csr 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem 2>/dev/null
            chmod 644 server.key
            """
        try await Command.check(["bash", "-c", script])
    }

    func roundTrip(_ connection: AMQPConnection) async throws {
        try await connection.waitUntilConnected(deadline: .now + .seconds(15))
        let queue = "/queue/tls-\(UUID().uuidString.prefix(6))"
        let receiver = try await connection.receiver(from: queue, deadline: .now + .seconds(10))
        try await connection.send(AMQPMessage(body: [7, 7]), to: queue, deadline: .now + .seconds(10))
        let messages = receiver.messages
        let body = try await withTimeout(.seconds(10), "a message over TLS") {
            var iterator = messages.makeAsyncIterator()
            return await iterator.next()?.body
        }
        #expect(body == [7, 7])
    }

    @Test("amqps with the broker's CA: PLAIN over TLS and EXTERNAL by client certificate work; another CA never connects")
    func tls() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-tls")
        try await Self.certificates(in: directory)
        try await BrokerProcess.withDedicated(tlsDirectory: directory.url.path) { broker in
            let tlsPort = broker.port + 1
            let trusted = AMQPConfiguration.TLS(caFile: directory.path("ca.pem"))

            // PLAIN over TLS, the broker's certificate checked against our CA and its name.
            let plain = try AMQPConnection(configuration: try AMQPConfiguration(
                url: "amqps://fence:\(broker.password)@localhost:\(tlsPort)", tls: trusted, containerID: "tls-plain"
            ), logger: logger)
            try await plain.whileRunning { try await roundTrip(plain) }

            // EXTERNAL: the client certificate is the identity (user "host-a", as its common name).
            try await broker.ctl("add_user", "host-a", UUID().uuidString)
            try await broker.ctl("set_permissions", "-p", "/", "host-a", ".*", ".*", ".*")
            var external = try AMQPConfiguration(
                url: "amqps://localhost:\(tlsPort)",
                tls: .init(caFile: directory.path("ca.pem"), certificateFile: directory.path("client.pem"), keyFile: directory.path("client.key")),
                containerID: "tls-external"
            )
            external.mechanisms = [.external]
            let certified = try AMQPConnection(configuration: external, logger: logger)
            try await certified.whileRunning { try await roundTrip(certified) }

            // A broker whose certificate our CA did not sign is never trusted.
            var untrusting = try AMQPConfiguration(url: "amqps://fence:\(broker.password)@localhost:\(tlsPort)",
                                                   tls: .init(caFile: directory.path("other-ca.pem")), containerID: "tls-wrong-ca")
            untrusting.reconnectBackoff = .milliseconds(200)...(.seconds(1))
            let refused = try AMQPConnection(configuration: untrusting, logger: logger)
            try await refused.whileRunning {
                await #expect(throws: AMQPError.self) { try await refused.waitUntilConnected(deadline: .now + .seconds(3)) }
            }
        }
    }
}
