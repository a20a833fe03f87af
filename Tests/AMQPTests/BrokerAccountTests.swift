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

    /// Waits until `broker` logged that it refused `user` the topic `name`: the proof that a
    /// failure on the client's side was the permission's doing.
    private func waitUntilRefused(_ broker: BrokerProcess, _ user: String, _ name: String) async throws {
        let line = "access to topic '\(name)' in exchange 'amq.topic' in vhost '/' refused for user '\(user)'"
        try await waitUntil("the broker refused \(user) the topic \(name)") {
            let logs = try FileManager.default.contentsOfDirectory(atPath: "\(broker.directory)/log").filter { $0.hasSuffix(".log") }
            return try logs.contains { try String(contentsOfFile: "\(broker.directory)/log/\($0)", encoding: .utf8).contains(line) }
        }
    }

    @Test("one broker user per host, set up as Docs/broker.md says: each account does what its daemon needs; RabbitMQ refuses a host's account another host's commands, the inventory's reading and any command's sending, and a router's account another router's replies and the inventory's publishing")
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

            // Reading what is not its own: the broker refuses the subscription's binding (RabbitMQ
            // 3.10 then leaves the attach unanswered: the client fails at its deadline), one
            // connection each.
            for (user, name) in [("h1", "fence.commands.h2"), ("router-a", "fence.reply.router-b"), ("h1", "fence.inventory")] {
                try await connected(as: user) { connection in
                    await #expect(throws: AMQPError.self, "\(user) reads \(name)") {
                        _ = try await connection.receiver(from: address(name), deadline: .now + .seconds(3))
                    }
                }
                try await waitUntilRefused(broker, user, name)
            }

            // Sending what is not its own: refused (the broker closes the connection), and nothing
            // arrives — the next message each subscriber gets is the genuine one sent after.
            try await connected(as: "h2") { h2 in
                try await connected(as: "h1") { h1 in
                    try await connected(as: "router-b") { router in
                        let h2Commands = try await h2.receiver(from: address("fence.commands.h2"), deadline: deadline)
                        let h1Commands = try await h1.receiver(from: address("fence.commands.h1"), deadline: deadline)
                        let inventory = try await router.receiver(from: address("fence.inventory"), deadline: deadline)
                        for (user, name) in [("h1", "fence.commands.h2"), ("h1", "fence.commands.h1"), ("router-a", "fence.inventory")] {
                            try await connected(as: user) { connection in
                                await #expect(throws: AMQPError.self, "\(user) sends to \(name)") {
                                    try await connection.send(AMQPMessage(body: [9]), to: address(name), deadline: .now + .seconds(3))
                                }
                            }
                            try await waitUntilRefused(broker, user, name)
                        }
                        try await router.send(AMQPMessage(body: [4]), to: address("fence.commands.h2"), deadline: deadline)
                        #expect(try await next(h2Commands)?.body == [4], "the command h1 sent h2 never arrived")
                        try await router.send(AMQPMessage(body: [5]), to: address("fence.commands.h1"), deadline: deadline)
                        #expect(try await next(h1Commands)?.body == [5], "the command h1 sent itself never arrived")
                        try await h2.send(AMQPMessage(body: [6]), to: address("fence.inventory"), deadline: deadline)
                        #expect(try await next(inventory)?.body == [6], "the inventory router-a published never arrived")
                    }
                }
            }
        }
    }
}
