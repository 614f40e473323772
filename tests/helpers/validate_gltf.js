// Runs the Khronos glTF validator (npm package gltf-validator) on glTF or GLB files and prints its report as
// JSON on stdout: node validate_gltf.js FILE (one report) or node validate_gltf.js FILE FILE... (a list of them)
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const files = process.argv.slice(2);
const validate = (file) =>
  validator.validateBytes(new Uint8Array(fs.readFileSync(file)), { uri: path.basename(file), maxIssues: 100 });
Promise.all(files.map(validate))
  .then((reports) => process.stdout.write(JSON.stringify(files.length === 1 ? reports[0] : reports)))
  .catch((error) => {
    process.stderr.write(String(error) + "\n");
    process.exit(2);
  });
