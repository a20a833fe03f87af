import Foundation
import Testing
import TestSupport
@testable import AMQP

extension AMQPClientTests {
    /// The accounts of Docs/broker.md ("One broker user per host"), line for line, for hosts h1 and
    /// h2 and routers router-a and router-b.
    private func addAccountsAsDocumented(_ broker: BrokerProcess, password: String) async throws {
        for host in ["h1", "h2"] {
            try await broker.ctl("add_user", host, password)
            try await broker.ctl("set_permissions", "-p", "/", host, #"^amq\.gen-.*$"#, #"^(amq\.gen-.*|amq\.topic)$"#, #"^(amq\.gen-.*|amq\.topic)$"#)
            try await broker.ctl("set_topic_permissions", "-p", "/", host, "amq.topic", #"^(fence\.inventory|fence\.reply\..+)$"#, #"^fence\.commands\.\#(host)$"#)
        }
        for router in ["router-a", "router-b"] {
            try await broker.ctl("add_user", router, password)
            try await broker.ctl("set_permissions", "-p", "/", router, #"^amq\.gen-.*$"#, #"^(amq\.gen-.*|amq\.topic)$"#, #"^(amq\.gen-.*|amq\.topic)$"#)
            try await broker.ctl("set_topic_permissions", "-p", "/", router, "amq.topic", #"^fence\.commands\..+$"#, #"^(fence\.inventory|fence\.reply\.\#(router))$"#)
        }
    }

    @Test("one broker user per host, set up as Docs/broker.md says: each account does what its daemon needs; a host's account reads no other host's commands and sends no command, a router's reads no other router's replies and publishes no inventory")
    func perHostAccounts() async throws {
        try await BrokerProcess.withDedicated { broker in
            let password = UUID().uuidString
            try await addAccountsAsDocumented(broker, password: password)
            /// Runs a connection of `user`'s, once it is open.
            func connected(as user: String, _ body: (AMQPConnection) async throws -> Void) async throws {
                let configuration = try AMQPConfiguration(url: "amqp://\(user):\(password)@127.0.0.1:\(broker.port)", containerID: unique(user))
                try await running(configuration) { connection in
                    try await connection.waitUntilConnected(deadline: deadline)
                    try await body(connection)
                }
            }
            let address = profile.address

            // What each needs: the router sends h1 a command, h1 publishes the inventory and a reply.
            try await connected(as: "router-a") { router in
                try await connected(as: "h1") { h1 in
                    let commands = try await h1.receiver(from: address("fence.commands.h1"), deadline: deadline)
                    let inventory = try await router.receiver(from: address("fence.inventory"), deadline: deadline)
                    let replies = try await router.receiver(from: address("fence.reply.router-a"), deadline: deadline)
                    try await router.send(AMQPMessage(body: [1]), to: address("fence.commands.h1"), deadline: deadline)
                    #expect(try await next(commands)?.body == [1])
                    try await h1.send(AMQPMessage(body: [2]), to: address("fence.inventory"), deadline: deadline)
                    #expect(try await next(inventory)?.body == [2])
                    try await h1.send(AMQPMessage(body: [3]), to: address("fence.reply.router-a"), deadline: deadline)
                    #expect(try await next(replies)?.body == [3])
                }
            }

            // Reading what is not its own: refused (RabbitMQ 3.10 closes the connection: one each).
            for (user, name) in [("h1", "fence.commands.h2"), ("router-a", "fence.reply.router-b"), ("h1", "fence.inventory")] {
                try await connected(as: user) { connection in
                    await #expect(throws: AMQPError.self, "\(user) reads \(name)") {
                        _ = try await connection.receiver(from: address(name), deadline: .now + .seconds(3))
                    }
                }
            }

            // Publishing what is not its own: refused, and nothing arrives — the next message h2's
            // commands and router-b's inventory get is the genuine one sent after.
            try await connected(as: "h2") { h2 in
                try await connected(as: "router-b") { router in
                    let commands = try await h2.receiver(from: address("fence.commands.h2"), deadline: deadline)
                    let inventory = try await router.receiver(from: address("fence.inventory"), deadline: deadline)
                    try await connected(as: "h1") { h1 in
                        await #expect(throws: AMQPError.self, "h1 sends h2 a command") {
                            try await h1.send(AMQPMessage(body: [9]), to: address("fence.commands.h2"), deadline: .now + .seconds(3))
                        }
                    }
                    try await connected(as: "router-a") { other in
                        await #expect(throws: AMQPError.self, "router-a publishes inventory") {
                            try await other.send(AMQPMessage(body: [9]), to: address("fence.inventory"), deadline: .now + .seconds(3))
                        }
                    }
                    try await router.send(AMQPMessage(body: [4]), to: address("fence.commands.h2"), deadline: deadline)
                    #expect(try await next(commands)?.body == [4], "the command h1 sent never arrived")
                    try await connected(as: "h2") { host in
                        try await host.send(AMQPMessage(body: [5]), to: address("fence.inventory"), deadline: deadline)
                    }
                    #expect(try await next(inventory)?.body == [5], "the inventory router-a published never arrived")
                }
            }
        }
    }
}
