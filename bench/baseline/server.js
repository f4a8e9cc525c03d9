// Baseline for the signaling load test: a signaling server in the style of the classic
// WebRTC video-chat tutorial (Node + socket.io; events `join room`, `sending signal`,
// `returning signal`), written here for the comparison in README.
// Usage: node server.js PORT
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 8090);
const capacity = Number(process.env.ROOM_CAPACITY || 2);
const server = http.createServer();
const io = new Server(server, { transports: ["websocket"] });

const rooms = new Map(); // room id -> array of socket ids
const roomOf = new Map(); // socket id -> room id

io.on("connection", (socket) => {
  socket.on("join room", (roomID) => {
    const members = rooms.get(roomID) || [];
    if (members.length >= capacity) {
      socket.emit("room full");
      return;
    }
    members.push(socket.id);
    rooms.set(roomID, members);
    roomOf.set(socket.id, roomID);
    socket.emit("all users", members.filter((id) => id !== socket.id));
  });

  socket.on("sending signal", (payload) => {
    io.to(payload.userToSignal).emit("user joined", { signal: payload.signal, callerID: payload.callerID });
  });

  socket.on("returning signal", (payload) => {
    io.to(payload.callerID).emit("receiving returned signal", { signal: payload.signal, id: socket.id });
  });

  socket.on("disconnect", () => {
    const roomID = roomOf.get(socket.id);
    roomOf.delete(socket.id);
    const members = (rooms.get(roomID) || []).filter((id) => id !== socket.id);
    if (members.length) rooms.set(roomID, members);
    else rooms.delete(roomID);
    members.forEach((id) => io.to(id).emit("user left", socket.id));
  });
});

server.listen(port, "127.0.0.1", () => console.log(`baseline listening on 127.0.0.1:${port}`));
