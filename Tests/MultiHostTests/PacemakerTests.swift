import Foundation
import Testing
import TestSupport

private func uuid(_ number: Int) -> String { String(format: "0c0c0c0c-0000-4000-8000-%012x", number) }

extension RoutedFencingTests {
    /// A real Pacemaker cluster (Debian's corosync and pacemaker, Deploy/lab/pacemaker.sh) whose
    /// nodes g1..g3 are guests of the multi-host lab, their VMs vm-g1..vm-g3 on hosts hv1..hv3: the
    /// fencer runs the real fence_xvm through the stonith device an operator creates with pcs
    /// (Docs/pacemaker.md), and every success is checked against the state virsh reads from the
    /// libvirtd of the host that runs the VM. Nested in RoutedFencingTests, whose .serialized
    /// reaches nested suites, so that it runs alone among the lab tests: beside them, the start-up
    /// of a lab and a cluster would starve their deadline-bound tests of CPU.
    @Suite(
        "A Pacemaker cluster of guests fenced through the routers", .serialized,
        .enabled(if: TestEnvironment.shouldRun(PacemakerCluster.prerequisites), "needs root, libvirtd, rabbitmq-server, fence-virt, corosync, pacemaker, pacemaker-cli-utils and pcs")
    )
    struct PacemakerTests {
        static let nodes = ["g1", "g2", "g3"]
        static let hostMap = "g1:vm-g1;g2:vm-g2;g3:vm-g3"

        /// The pcs command of Docs/pacemaker.md, with the lab's key and multicast group.
        func createDevice(_ lab: MultiHostLab, _ cluster: PacemakerCluster) async throws {
            let options = try await lab.run("device-options").output.split(separator: "\n").map(String.init)
            let create = try await cluster.crm(
                "g1", ["pcs", "stonith", "create", "xvm", "fence_xvm", "pcmk_host_map=\(Self.hostMap)"] + options
                    + ["pcmk_reboot_timeout=75s", "pcmk_off_timeout=75s", "op", "monitor", "interval=60s"])
            #expect(create.status == 0, "\(create)")
            // Started means its first monitor (a full fence_xvm round trip through a router) passed.
            try await waitUntil("the stonith device started", within: .seconds(60), every: .milliseconds(500)) {
                try await cluster.crm("g1", "crm_resource", "--resource", "xvm", "--locate").output.contains("is running on")
            }
        }

        /// Waits until `node`'s pacemaker has stopped itself (it learns it was fenced while still
        /// running: the lab's VMs are not the nodes' processes), starts it again as its VM's boot
        /// would, and waits until every node is online again.
        func rejoin(_ node: String, _ cluster: PacemakerCluster, observer: String) async throws {
            try await waitUntil("\(node) stopped after being fenced", within: .seconds(60), every: .milliseconds(500)) {
                try await !cluster.isRunning(node)
            }
            try await cluster.start(node)
            try await waitUntil("\(node) back in the cluster", within: .seconds(120), every: .milliseconds(500)) {
                try await cluster.online(as: observer) == Set(Self.nodes)
            }
        }

        @Test("stonith_admin --reboot of a node whose VM runs on another host; a node killed and fenced by the cluster itself; fencing after the node's VM migrated")
        func clusterFencing() async throws {
            try TestEnvironment.require(PacemakerCluster.prerequisites)   // under CI, before a lab is built for nothing
            try await MultiHostLab.with(hosts: 3, guests: 3) { lab in
                for index in 1...3 {
                    try await lab.define("hv\(index)", "vm-g\(index)", uuid: uuid(index))
                }
                try await lab.waitUntilListed("vm-g3", on: true)
                try await PacemakerCluster.with(in: lab, nodes: Self.nodes) { cluster in
                    #expect(try await cluster.hasQuorum(as: "g1"))
                    try await createDevice(lab, cluster)
                    let devices = try await cluster.crm("g1", "stonith_admin", "--list", "g2")
                    #expect(devices.status == 0 && devices.output.contains("xvm"), "\(devices)")

                    // (a) An operator on g1 reboots g2, whose VM runs on hv2.
                    let before = try await lab.domainID("hv2", "vm-g2")
                    let reboot = try await cluster.crm("g1", "stonith_admin", "--reboot", "g2")
                    #expect(reboot.status == 0, "\(reboot)")
                    #expect(try await lab.state("hv2", "vm-g2") == "running")
                    #expect(try await lab.domainID("hv2", "vm-g2") != before, "vm-g2 really restarted")
                    #expect(try await cluster.fencingHistory("g2", as: "g1").first?.contains("successful") == true)
                    #expect(lab.answers("router-hv1", op: "reboot", domain: "vm-g2") == ["success"])
                    try await rejoin("g2", cluster, observer: "g1")

                    // (b) g3 crashes (every process of it SIGKILLed): the cluster fences it by itself,
                    // with its default stonith-action, reboot.
                    let killedBefore = try await lab.domainID("hv3", "vm-g3")
                    try await cluster.kill("g3")
                    try await waitUntil("the cluster fenced g3", within: .seconds(120), every: .milliseconds(500)) {
                        try await cluster.fencingHistory("g3", as: "g1").first?.contains("successful") == true
                    }
                    let fenced = try await cluster.fencingHistory("g3", as: "g1")
                    #expect(fenced.first?.hasPrefix("reboot of g3 successful") == true, "\(fenced)")
                    #expect(fenced.first?.contains("client=pacemaker-controld") == true, "asked for by the cluster, not by hand: \(fenced)")
                    #expect(try await lab.state("hv3", "vm-g3") == "running")
                    #expect(try await lab.domainID("hv3", "vm-g3") != killedBefore, "vm-g3 really restarted")
                    #expect(try await cluster.hasQuorum(as: "g1"), "g1 and g2 keep quorum")
                    try await cluster.start("g3")
                    try await waitUntil("g3 back in the cluster", within: .seconds(120), every: .milliseconds(500)) {
                        try await cluster.online(as: "g1") == Set(Self.nodes)
                    }

                    // (c) vm-g2 migrates from hv2 to hv1; once the router has it on hv1, the
                    // reboot goes there.
                    try await lab.migrate("vm-g2", from: "hv2", to: "hv1")
                    try await waitUntil("the router has vm-g2 on hv1", within: .seconds(30), every: .milliseconds(200)) {
                        // fencectl inventory waits for the hosts' next snapshots (about 6 s a call).
                        let inventory = try await lab.fencectl(on: "hv1", "inventory", "--json")
                        return inventory.status == 0 && inventory.output.contains(#""name":"vm-g2","uuid":"\#(uuid(2))","state":"running","persistent":true,"host":"hv1""#)
                    }
                    #expect(try await lab.listed()["vm-g2"] == "on")
                    let migrated = try await lab.domainID("hv1", "vm-g2")
                    let again = try await cluster.crm("g3", "stonith_admin", "--reboot", "g2")
                    #expect(again.status == 0, "\(again)")
                    #expect(try await lab.state("hv1", "vm-g2") == "running")
                    #expect(try await lab.domainID("hv1", "vm-g2") != migrated, "vm-g2 really restarted, on hv1")
                    #expect(try await lab.state("hv2", "vm-g2") == nil, "nothing left on hv2")
                    #expect(try await lab.state("hv1", "vm-g1") == "running", "g1's VM beside it untouched")
                }
            }
        }
    }
}
